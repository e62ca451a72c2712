"""The `detach` command: LightningCLI in subclass mode for every stage and dataset.

`detach fit --config configs/<dataset>/<stage>.yaml`, `detach test --config … --ckpt_path …`,
`detach predict …`. The DataModule's `data_info` (channels, classes, places) is linked into the
model after instantiation, so one config never states the same fact twice. Without a `data:`
section the built-in synthetic kitchen is used.
"""

from __future__ import annotations

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from detach_pl.data.datamodule import WindowDataModule
from detach_pl.modules.base import DetachModule


class DetachCLI(LightningCLI):
    """LightningCLI with the data → model link and the synthetic default."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments(
            "data",
            "model.init_args.data_info",
            compute_fn=lambda data: data.data_info,
            apply_on="instantiate",
        )
        parser.set_defaults({"data": {"class_path": "detach_pl.data.synthetic.SyntheticKitchenDataModule"}})


def main(args: list[str] | None = None, run: bool = True) -> DetachCLI:
    """Entry point of `detach`; `args` lets tests call it in-process."""
    return DetachCLI(
        DetachModule,
        WindowDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
        auto_configure_optimizers=False,
    )


def console_main() -> None:
    """The `detach` console script (returns nothing, so the exit status is 0 on success)."""
    main()


if __name__ == "__main__":
    console_main()
