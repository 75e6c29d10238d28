"""``quadd dataset beam``: generate the 3GPP beam-management dataset (TR 38.901 channels
from Sionna, the ``quadd[beam]`` extra) and write it as an ``.npz`` that ``--dataset``
takes. See ``quadd_train.data.beam`` and docs/beam.md."""

from __future__ import annotations

import sys

import click

from .output import force_opt, json_line

__all__ = ["dataset_command"]

_SCENARIO_NAMES = {"uma": "UMa", "umi": "UMi"}


@click.group("dataset")
def dataset_command() -> None:
    """Generate a dataset as an .npz that --dataset takes (beam: 3GPP beam management)."""


@dataset_command.command("beam")
@click.option("--drops", type=click.IntRange(2), default=20_000, show_default=True,
              help="UEs to drop (train + test).")
@click.option("--test-fraction", type=float, default=0.2, show_default=True,
              help="Share of the drops held out as the test split.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Same seed, same arrays.")
@click.option("--scenario", type=click.Choice(["uma", "umi"]), default="uma",
              show_default=True, help="TR 38.901 urban macro or micro cell.")
@click.option("--rsrp-step", type=float, default=None,
              help="Quantize the reported RSRP features to this many dB (3GPP reports "
              "in 1 dB steps); default: unquantized.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: when stderr is a terminal).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the statistics as one JSON object.")
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False), required=True,
              help="Output .npz file (written atomically).")
@force_opt
def beam_command(drops: int, test_fraction: float, seed: int, scenario: str,
                 rsrp_step: float | None, progress: bool | None, as_json: bool, output: str,
                 force: bool) -> None:
    """Generate the 3GPP Rel-18 beam-management dataset (BM-Case 1): per UE, the L1-RSRP
    (dBm) of 8 Set B beams as features and the best of 32 Set A beams as the label,
    from TR 38.901 UMa/UMi channels at 30 GHz; written to OUTPUT.npz with the Set A
    RSRPs of every UE (rsrp_train, rsrp_test)."""
    from quadd_codec.paths import check_output
    from quadd_train.data.beam import BeamConfig, generate_beam, require_sionna, write_beam_npz

    if not output.lower().endswith(".npz"):
        # The file is an .npz whatever its name: a .qdd name would mislead every reader.
        raise click.BadParameter("must end in .npz (the dataset is written as an .npz)",
                                 param_hint="--output")
    config = BeamConfig(drops=drops, scenario=scenario, seed=seed,
                        test_fraction=test_fraction, rsrp_step=rsrp_step).check()
    check_output(output, force=force)
    require_sionna()
    show = sys.stderr.isatty() if progress is None else progress
    data = generate_beam(config, progress=show)
    write_beam_npz(output, data)
    stats = {"output": output, **data.stats}
    if as_json:
        click.echo(json_line(stats))
        return
    s = data.stats
    click.echo(f"wrote {output}: {s['train']} train + {s['test']} test UEs, 8 Set B RSRP "
               f"features, 32 classes ({_SCENARIO_NAMES[scenario]}, seed {seed}, {s['seconds']} s)")
    click.echo(f"best Set A beam already in Set B: {s['best_in_set_b']:.1%}; strongest "
               f"Set B beam is the best Set A beam: {s['set_b_argmax_top1']:.1%}")
    click.echo(f"class balance: {s['classes_present']}/32 classes present, shares "
               f"{s['min_class_share']:.2%} .. {s['max_class_share']:.2%}; best-beam SNR "
               f"median {s['best_beam_snr_db_median']} dB (10th percentile "
               f"{s['best_beam_snr_db_p10']} dB)")
