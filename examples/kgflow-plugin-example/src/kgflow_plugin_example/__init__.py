"""An example kgflow plugin package, written only against the public API (:mod:`kgflow.plugin`)."""
from __future__ import annotations

import click

from kgflow.plugin import Component, hookimpl

from kgflow_plugin_example.dataset import ToyShopParams, load_toy_shop
from kgflow_plugin_example.encoder import BiasMFParams, build_bias_mf
from kgflow_plugin_example.loss import HingeParams, build_hinge

__version__ = "0.1.0"


@hookimpl
def kgflow_components() -> list[Component]:
    return [
        Component("encoder", "bias-mf", build_bias_mf, BiasMFParams,
                  "matrix factorisation with a learned item bias"),
        Component("dataset", "toy-shop", load_toy_shop, ToyShopParams,
                  "a generated shop: customers, products with category/brand KG and descriptions"),
        Component("loss", "hinge", build_hinge, HingeParams,
                  "margin ranking loss: max(0, margin - (s_pos - s_neg))"),
    ]


@hookimpl
def kgflow_cli_commands(cli: click.Group) -> None:
    @cli.command("toy-shop")
    @click.option("--customers", default=200, show_default=True)
    def toy_shop(customers: int) -> None:
        """Summarise the example plugin's toy-shop dataset."""
        data = load_toy_shop(ToyShopParams(customers=customers), None)
        for key, value in data.summary().items():
            click.echo(f"{key}: {value}")
