"""The hardware step's card picker on two fake NVML cards: per-card memory bars, space drops a card,
the choice reaches the state, the config (`distributed.gpus`) and what the next steps count; none
picked blocks Next. And the config key itself: honoured by run_gpus/resolution/launch, or refused."""

from __future__ import annotations

import pytest
from pilot import settle

from ftwizard.core.config import parse_config
from ftwizard.core.defaults import resolve_defaults
from ftwizard.core.errors import UserError
from ftwizard.core.hardware import GPU, Hardware, cuda_env, run_gpus, run_world_size

SIZE = (80, 24)
A100 = GPU(0, "NVIDIA A100-SXM4-80GB", 80.0, 79.0, (8, 0))
TWO = Hardware(gpus=(A100, GPU(1, A100.name, 80.0, 60.0, (8, 0))), cpu_count=2, ram_total_gib=64)


def cfg(**dist):
    return parse_config({"model": {"name_or_path": "meta-llama/Llama-3.1-8B"}, "method": "lora",
                         "dataset": {"path": "x.jsonl"}, "distributed": dist})


async def test_two_cards_listed_with_bars_and_space_drops_one(make_app):
    app = make_app("two-gpus")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.go("hardware")
        await pilot.pause()
        screen = app.screen
        pick = screen.query_one("#gpu-pick")
        lines = [str(pick.get_option_at_index(i).prompt) for i in range(pick.option_count)]
        assert len(lines) == 2 and lines[0].startswith("GPU 0 RTX A6000") and lines[1].startswith("GPU 1")
        # memory in use as a bar: 0.6 of 48 GB is a fifth of one of the 16 cells
        assert "GPU 0 RTX A6000".ljust(27) + "▏" + "░" * 15 + " 0.6/48.0 GB" in lines[0]
        assert pick.selected == [0, 1] and app.state.gpus is None  # every card: auto
        assert run_world_size(app.state.hardware, app.state.distributed) == 2
        pick.focus()
        await pilot.press("down", "space")  # drop GPU 1
        await pilot.pause()
        assert app.state.gpus == (0,)
        assert app.state.to_config().distributed.gpus == [0]
        assert [g.index for g in run_gpus(app.state.hardware, app.state.distributed)] == [0]
        assert run_world_size(app.state.hardware, app.state.distributed) == 1
        assert "trains on 1 of the 2 cards: GPU 0" in str(screen.query_one("#hw-verdict").render())
        await pilot.press("up", "space")  # drop GPU 0 too: nothing to train on
        await pilot.pause()
        assert app.state.gpus == () and screen.check_action("next", ()) is None
        assert "pick at least one" in str(screen.query_one("#hw-verdict").render())
        await pilot.press("space", "down", "space")  # both back: auto again
        await pilot.pause()
        assert app.state.gpus is None and screen.check_action("next", ()) is True


def test_the_config_key_is_honoured_in_resolution_and_launch(monkeypatch):
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    resolved, notes = resolve_defaults(cfg(gpus=[1]), TWO)
    assert [g.index for g in run_gpus(TWO, resolved.distributed)] == [1]
    assert (resolved.distributed.nproc_per_node, resolved.distributed.strategy) == (1, "none")
    both = resolve_defaults(cfg(gpus=[0, 1]), TWO)[0].distributed
    assert (both.nproc_per_node, both.strategy) == (2, "ddp")
    assert cuda_env(both) == {"CUDA_VISIBLE_DEVICES": "0,1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    # auto: the environment's CUDA_VISIBLE_DEVICES untouched, read in NVML's (PCI bus) order
    assert cuda_env(cfg().distributed) == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def test_the_launcher_gives_the_training_process_the_chosen_cards(tmp_path):
    from ftwizard.core.config import dump_config
    from ftwizard.core.launch import chosen_cards_env

    (tmp_path / "config.yaml").write_text(dump_config(cfg(gpus=[1, 3])))
    assert chosen_cards_env(tmp_path)["CUDA_VISIBLE_DEVICES"] == "1,3"


@pytest.mark.parametrize("gpus, hw, words", [
    ([2], TWO, "names card 2 but this machine has cards [0, 1]"),
    ([0], Hardware(cpu_count=2, ram_total_gib=16), "trains on the CPU"),
])
def test_cards_this_run_cannot_use_are_refused(gpus, hw, words):
    with pytest.raises(UserError, match="distributed.gpus") as err:
        resolve_defaults(cfg(gpus=gpus), hw)
    assert words in str(err.value)


@pytest.mark.parametrize("bad", [[], [0, 0], [-1]])
def test_an_empty_or_repeated_card_list_is_a_config_error(bad):
    with pytest.raises(UserError, match="distributed.gpus"):
        cfg(gpus=bad)


async def test_method_dataset_and_hyperparameter_steps_count_only_the_picked_cards(make_app, tiny_work):
    """With one of two cards picked, the later steps count one process, as the run will have."""
    from ftwizard.core.catalog import CATALOG

    app = make_app("two-gpus")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)

        async def figures() -> tuple[str, str, str]:
            app.set_state(app.state.replace(model="meta-llama/Llama-3.1-8B", arch=CATALOG["llama-3.1-8b"]))
            app.go("method")
            await settle(app, pilot)
            method = str(app.screen.query_one("#method-target").render())
            app.set_state(app.state.replace(model=str(tiny_work / "tiny-model"), arch=None,
                                            dataset_path=str(tiny_work / "data" / "chat.jsonl")))
            app.go("dataset")
            screen = app.screen
            for _ in range(100):  # preview, tokenizer and the full scan: all in workers
                await settle(app, pilot)
                stats = str(screen.query_one("#stats-text").render())
                if "steps/epoch" in stats:
                    break
            app.go("hyperparams")
            await settle(app, pilot)
            return method, stats, str(app.screen.query_one("#hp-summary").render())

        both = await figures()
        assert "on 2x RTX A6000" in both[0] and "x 2 devices)" in both[2]
        app.go("hardware")
        await settle(app, pilot)
        app.screen.query_one("#gpu-pick").focus()
        await pilot.press("down", "space")  # drop GPU 1
        await pilot.pause()
        assert app.state.gpus == (0,)
        one = await figures()
        assert "on 1x RTX A6000" in one[0] and "a run trains on 1 of the 2 cards" in one[0]
        assert "x 1 device)" in one[2]
        steps = [int(s.split(" steps/epoch")[0].rsplit(" ", 1)[-1]) for s in (both[1], one[1])]
        assert steps[1] == 2 * steps[0], (both[1], one[1])  # one process: twice the optimizer steps
