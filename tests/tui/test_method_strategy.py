"""The method step on two cards (issue 14, item 3): each method's bar is the per-card figure under the
strategy a run of it would get (DDP when it fits one card, FSDP when it does not), shown beside the
bar, with the strategy's reason above the breakdown."""

from __future__ import annotations

from test_wizard_flow import SIZE, pick, walk_to_method
from pilot import settle


async def test_two_cards_show_each_methods_strategy_and_the_per_card_figure(make_app):
    from ftwizard.core.catalog import CATALOG
    from ftwizard.core.estimate import Settings, estimate, settings_from_config

    app = make_app("two-gpus")
    async with app.run_test(size=SIZE) as pilot:
        await walk_to_method(app, pilot, "qwen2.5-7b")
        screen = app.screen
        options = screen.query_one("#methods")
        prompts = {options.get_option_at_index(i).id: str(options.get_option_at_index(i).prompt)
                   for i in range(options.option_count)}
        # Qwen2.5-7B full does not fit one 48 GB card: sharded; LoRA fits one: a whole copy per card
        assert "· fsdp" in prompts["full"] and "· ddp" in prompts["lora"]
        await pick(pilot, options, "full")
        await settle(app, pilot)
        text = str(screen.query_one("#breakdown").render())
        assert "per card of 2, strategy fsdp" in text and "shard it" in text
        assert "1/2" in text  # weights, gradients and optimizer states: half per card
        # the bar is the per-card FSDP figure, below what one card would need for the whole model
        from ftwizard.core.config import RunConfig

        s = settings_from_config(RunConfig.model_validate({"dataset": {"path": "-"}, "method": "full",
                                                           "train": app.state.train_config.model_dump()}))
        whole = estimate(CATALOG["qwen2.5-7b"], s).total_gib
        sharded = estimate(CATALOG["qwen2.5-7b"], Settings(**{**s.__dict__, "gpus": 2, "strategy": "fsdp"})).total_gib
        assert f"{sharded:6.1f} GiB" in prompts["full"] and sharded < whole
