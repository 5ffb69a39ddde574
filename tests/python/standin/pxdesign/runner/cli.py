"""Stand-in for pxdesign.runner.cli: the `pxdesign` click group (console script
`pxdesign = pxdesign.runner.cli:cli`), `infer` forwarding to inference.main(argv)."""
import logging

import click


@click.group()
def cli() -> None:
    """PXDesign stand-in."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)-8s %(message)s")


@cli.command(context_settings=dict(ignore_unknown_options=True, allow_extra_args=True))
@click.option("--dump_dir", "-o", required=True)
@click.option("--input", "-i", "input_path", required=True)
@click.option("--dtype", default="bf16")
@click.option("--N_sample", "n_sample", type=int, default=5)
@click.option("--N_step", "n_step", type=int, default=400)
@click.option("--eta_type", default="const")
@click.option("--eta_min", type=float, default=2.5)
@click.option("--eta_max", type=float, default=2.5)
@click.pass_context
def infer(ctx, dump_dir, input_path, dtype, n_sample, n_step, eta_type, eta_min, eta_max):
    from . import inference as _inference
    argv = ["--dump_dir", dump_dir, "--input_json_path", input_path, "--dtype", dtype,
            "--N_sample", str(n_sample), "--N_step", str(n_step), "--eta_type", eta_type,
            "--eta_min", str(eta_min), "--eta_max", str(eta_max), *ctx.args]
    _inference.main(argv)


if __name__ == "__main__":
    cli()
