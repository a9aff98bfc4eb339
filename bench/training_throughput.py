"""Training and inference throughput: plain PyTorch vs igc-nas's fast path, on the machine at hand.

The reference runs in its own process exactly as a plain PyTorch user would run it (NCHW, one conv per
group convolution, view/transpose permutations, glibc's default allocator). The fast side runs in a
second process: heap-kept large buffers, then the training path ``decide_training_path`` chooses by
timing whole steps of every candidate here (plain, per-block chain/composed, channels_last, both), as
the trainer does. A third process (``--compile-rounds``) makes the library's real decision for a long
CIFAR training (``--epochs``), compile included where it may pay, and trains the best eager path
compiled to show what compiling gives. The sides alternate over rounds in fresh processes and the parent
prints medians, [min-max] spreads and ratios. Inference (the plain model vs ``optimize_for_inference``:
BN folded, variant chosen by timing) is timed in a fourth process, the two sides alternating call by call.

The trainer itself (``igcnas.evaluators.train.train_model``: batches gathered from uint8 images,
normalised and augmented on the device, loss checks, scheduler) is compared with a bare PyTorch loop
on the same model, batch, precision and device (pre-built tensors, no augmentation, no evaluation),
alternating over rounds in one process: ``trainer_vs_bare_loop`` is the trainer's share of the
bare loop's images/s. Both run on CIFAR-shaped data (50,000 synthetic 32x32 images, no download) for
``igcv2_c64_d20`` and ``xception_c35_d20``; an epoch's seconds are reported (measured on a GPU,
extrapolated from the timed steps on a CPU, and labelled so).

    python bench/training_throughput.py [--device cpu|cuda] [--only all|trainer|train|infer] [--rounds 3]
        [--repeats 3] [--steps 4] [--compile-rounds 1] [--epochs 300] [--infer-rounds N] [--infer-batch 128]
        [--json PATH] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TRAIN_NETWORKS = ["igcv2_c64_d20", "xception_c35_d20", "igcv1_c48_d20", "igcv2_c80_d20", "igcv2_star_c216_d20",
                  "dense_c16_d20", "searched_igcv2_c32_b2", "searched_igcv1_c24_b2"]


def network(name: str):
    from igcnas.search_space.paper_networks import ZOO, cifar_network

    if name in ZOO:
        return ZOO[name].config
    if name == "dense_c16_d20":  # a ResNet-style baseline of similar MACs (~37M) to the IGC nets
        return cifar_network("dense", 16, 20, num_classes=100)
    if name == "searched_igcv2_c32_b2":
        return cifar_network("igcv2", 32, 8, [{"chain": (4, 8)}, {"chain": (8, 8)}, {"chain": (8, 16)}],
                             num_classes=10)
    if name == "searched_igcv1_c24_b2":
        return cifar_network("igcv1", 24, 8, [{"k1": 2}, {"k1": 4}, {"k1": 8}], num_classes=10)
    raise ValueError(name)


def measure(mode: str, names: list[str], repeats: int, steps: int, batch: int, epochs: int) -> dict:
    """One side's training images/s per network: ``reference`` (plain PyTorch, glibc's default allocator),
    ``fast`` (the eager path ``decide_training_path`` chooses by timing here; compiling left to ``compiled``)
    or ``compiled`` (the real decision for ``epochs`` CIFAR epochs, compile tried where it may pay, then the
    best eager path compiled and timed in the same loop whatever was decided)."""
    from dataclasses import replace

    import torch
    import torch.nn.functional as F

    from igcnas.models import build_model
    from igcnas.models.training_path import DecisionCache, apply_path, decide_training_path, prepare_for_training

    torch.manual_seed(0)
    out: dict = {"mode": mode, "threads": torch.get_num_threads(), "train": {}, "decisions": {}}
    for name in names:
        config = network(name)
        shape = config.input_shape
        model = build_model(config, seed=0)
        forward, memory_format = model, torch.contiguous_format
        if mode == "fast":  # a fresh cache: every process decides by its own timing
            prepared = prepare_for_training(model, shape, batch=batch, expected_steps=10**9, allow_compile=False,
                                            cache=DecisionCache(path=None))
            forward, memory_format = prepared, prepared.memory_format
            out["decisions"][name] = prepared.decision.to_json()
        elif mode == "compiled":
            from igcnas.models.fast import configure_allocator

            configure_allocator()
            expected = epochs * math.ceil(CIFAR_SHAPE[0] / batch)
            decision = decide_training_path(model, shape, batch=batch, expected_steps=expected,
                                            cache=DecisionCache(path=None))
            path = replace(decision.path, compiled=True)
            start = time.perf_counter()
            forward = apply_path(model, path, shape, batch=batch, device=torch.device("cpu"))
            memory_format = path.memory_format
            out["decisions"][name] = {**decision.to_json(), "expected_steps": expected, "timed_path": path.name}
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
        x = torch.randn(batch, *shape).contiguous(memory_format=memory_format)
        y = torch.randint(0, config.num_classes, (batch,))

        def step() -> None:
            loss = F.cross_entropy(forward(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        if mode == "compiled":
            step()  # compiles again: the same network, compiled earlier in this process while deciding
            out["decisions"][name]["compile_again_seconds"] = time.perf_counter() - start
        step()
        step()  # warm-up
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(steps):
                step()
            rates.append(steps * batch / (time.perf_counter() - start))
        out["train"][name] = rates
    return out


TRAINER_NETWORKS = ["igcv2_c64_d20", "xception_c35_d20"]
CIFAR_SHAPE = (50_000, 3, 32, 32)


def cifar_shaped(seed: int = 0):
    """50,000 random uint8 32x32 RGB images with 10 labels, held as the trainer holds real CIFAR-10."""
    import torch

    from igcnas.evaluators.data_splits import DataSplits

    g = torch.Generator().manual_seed(seed)
    n = CIFAR_SHAPE[0]
    images = torch.randint(0, 256, CIFAR_SHAPE, dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    mean, std = torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.29)
    return DataSplits(name="cifar-shaped", num_classes=10, augment=True, scale=1 / 255, mean=mean, std=std,
                      train_u8=images, train_y=labels, val_u8=images[:512], val_y=labels[:512], test_u8=None,
                      test_y=None, val_index=tuple(range(512)))


def measure_trainer(names: list[str], device_name: str, rounds: int, steps: int, batch: int,
                    precision: str | None) -> dict:
    """Trainer vs bare loop, alternating in this process on one model per network."""
    import math

    import torch
    import torch.nn.functional as F

    from igcnas.evaluators.device import autocast, resolve_device, resolve_precision
    from igcnas.evaluators.train import TrainSettings, train_model
    from igcnas.models import build_model
    from igcnas.models.training_path import prepare_for_training
    from igcnas.search_space.paper_networks import cifar_network

    device = resolve_device(device_name)
    precision = resolve_precision(precision, device)
    data = cifar_shaped().to(device)
    out: dict = {"device": str(device), "precision": precision, "threads": torch.get_num_threads(),
                 "batch": batch, "steps": steps, "networks": {}}
    for name in names:
        zoo = network(name)  # the paper's network, with CIFAR-10's 10 classes
        config = cifar_network(zoo.family, zoo.stages[0].width, zoo.depth,
                               [{k: v for k, v in vars(s).items() if k in ("k1", "chain", "k", "l")}
                                for s in zoo.stages], num_classes=10, stem_width=zoo.stem_width)
        config = config.replace(transition=zoo.transition, shortcut=zoo.shortcut, shortcut_groups=zoo.shortcut_groups)
        model = build_model(config, seed=0).to(device)
        # the path the trainer takes for these steps (it decides the same way and finds this decision kept)
        prepared = prepare_for_training(model, (3, 32, 32), batch=batch, device=device, expected_steps=10**9,
                                        allow_compile=False, precision=precision)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
        x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=prepared.memory_format)
        y = torch.randint(0, 10, (batch,), device=device)

        def bare_step() -> None:
            with autocast(device, precision):
                loss = F.cross_entropy(prepared(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        settings = TrainSettings(epochs=1, batch_size=batch, max_batches_per_epoch=steps, device=str(device),
                                 precision=precision, lr=0.05)
        bare_step()
        bare_step()  # warm-up (kernel selection, first-touch pages)
        bare, trainer = [], []
        for round_ in range(rounds):
            for side in (("bare", "trainer") if round_ % 2 == 0 else ("trainer", "bare")):
                if side == "bare":
                    sync()
                    start = time.perf_counter()
                    for _ in range(steps):
                        bare_step()
                    sync()
                    bare.append(steps * batch / (time.perf_counter() - start))
                else:
                    result = train_model(model, data, settings)
                    trainer.append(result.images_per_second)
        rate = statistics.median(trainer)
        epoch_s = CIFAR_SHAPE[0] / rate
        out["networks"][name] = {"bare_loop": bare, "trainer": trainer,
                                 "trainer_vs_bare_loop": rate / statistics.median(bare),
                                 "epoch_seconds": epoch_s, "epoch_seconds_measured": False,
                                 "images_per_second": rate}
        if device.type == "cuda":  # a full epoch is affordable on a GPU: measure it
            full = train_model(model, data, TrainSettings(epochs=1, batch_size=batch, device=str(device),
                                                          precision=precision, lr=0.05))
            out["networks"][name].update(epoch_seconds=math.ceil(CIFAR_SHAPE[0] / batch) * batch
                                         / full.images_per_second, epoch_seconds_measured=True,
                                         epoch_images_per_second=full.images_per_second)
    return out


def measure_inference(names: list[str], repeats: int, large_batch: int = 128) -> dict:
    """Reference and ``optimize_for_inference`` of each network timed alternately in one process.

    Inference needs no process-wide setting (the allocator is configured for training only), so the two
    sides can share a process and alternate call by call: at batch 1 a call takes milliseconds and the
    machine's drift between two processes would be larger than the difference being measured.
    """
    import torch

    from igcnas.models import build_model
    from igcnas.models.fast import optimize_for_inference

    out: dict = {}
    for name in names:
        config = network(name)
        shape = config.input_shape
        model = build_model(config, seed=0).eval()
        out[name] = {}
        for b in (1, large_batch):
            runner = optimize_for_inference(model, shape, batch=b)
            variant = runner.igcnas_variant
            x = torch.randn(b, *shape)
            x_fast = x.to(memory_format=torch.channels_last) if variant.endswith("channels_last") else x
            sides = {"reference": (model, x), "fast": (runner, x_fast)}
            rates: dict[str, list[float]] = {"reference": [], "fast": []}
            n = 10 if b == 1 else 1
            with torch.no_grad():
                for module, inp in sides.values():
                    module(inp)
                for _ in range(repeats):
                    for side, (module, inp) in sides.items():
                        start = time.perf_counter()
                        for _ in range(n):
                            module(inp)
                        rates[side].append(n * b / (time.perf_counter() - start))
            out[name][str(b)] = {**rates, "variant": variant}
    return out


def merge_round(results: dict, mode: str, part: dict) -> None:
    """Add one worker's rates (and decisions, where the side makes any) to ``results[mode]``."""
    side = results.setdefault(mode, {**part, "train": {}, "decisions": {}})
    for name, rates in part["train"].items():
        side["train"].setdefault(name, []).extend(rates)
    for name, decision in part.get("decisions", {}).items():
        side["decisions"].setdefault(name, []).append(decision)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="training steps per timed repeat")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="only the two headline networks")
    parser.add_argument("--rounds", type=int, default=3, help="alternating reference/fast rounds (default 3)")
    parser.add_argument("--infer-rounds", type=int, default=1,
                        help="rounds that also measure inference (default 1: the two sides already alternate "
                             "call by call, and the full zoo at batch 128 takes a quarter of an hour)")
    parser.add_argument("--infer-batch", type=int, default=128,
                        help="the large batch inference is measured at, beside batch 1 (default 128)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--device", default="cpu", help="where the trainer-vs-bare-loop runs (cpu, cuda, cuda:N)")
    parser.add_argument("--precision", help="fp32, bf16 or fp16 for the trainer run (default: the device's)")
    parser.add_argument("--only", choices=["all", "trainer", "train", "infer"], default="all",
                        help="run one part: trainer vs bare loop, reference vs fast training, or inference")
    parser.add_argument("--trainer-steps", type=int, default=16, help="timed steps per trainer/bare-loop repeat")
    parser.add_argument("--compile-rounds", type=int, default=1,
                        help="rounds that also time torch.compile (default 1: a compile takes about a minute per "
                             "network on a 2-core CPU; 0 leaves compiling out)")
    parser.add_argument("--epochs", type=int, default=300,
                        help="the CIFAR training length (epochs of 50,000 images) the compile decision is made "
                             "for (default 300)")
    parser.add_argument("--worker", choices=["reference", "fast", "compiled", "infer", "trainer"],
                        help=argparse.SUPPRESS)
    args = parser.parse_args()

    from igcnas.search_space.paper_networks import ZOO

    names = TRAIN_NETWORKS[:2] if args.quick else TRAIN_NETWORKS
    infer = [n for n in ZOO if n != "igcv3_1.0"] + ["igcv3_1.0"]
    if args.quick:
        infer = ["igcv2_c64_d20", "xception_c35_d20"]
    if args.worker == "infer":
        print(json.dumps(measure_inference(infer, args.repeats, args.infer_batch)))
        return 0
    if args.worker == "trainer":
        print(json.dumps(measure_trainer(TRAINER_NETWORKS, args.device, args.rounds, args.trainer_steps,
                                         args.batch, args.precision)))
        return 0
    if args.worker:
        print(json.dumps(measure(args.worker, names, args.repeats, args.steps, args.batch, args.epochs)))
        return 0
    summary: dict = {"batch": args.batch}
    if args.only in ("all", "trainer"):
        print("trainer vs bare loop: measuring ...", file=sys.stderr, flush=True)
        worker = [sys.executable, __file__, "--worker", "trainer", "--device", args.device, "--rounds",
                  str(args.rounds), "--trainer-steps", str(args.trainer_steps), "--batch", str(args.batch)]
        worker += ["--precision", args.precision] if args.precision else []
        done = subprocess.run(worker, capture_output=True, text=True, check=True)
        part = json.loads(done.stdout.strip().splitlines()[-1])
        summary["trainer_vs_bare_loop"] = part
        print(f"trainer vs bare loop on CIFAR-shaped data (50,000 x 3x32x32 uint8, augmentation on; "
              f"{part['device']}, {part['precision']}, batch {part['batch']}, {part['threads']} threads; median of "
              f"{args.rounds} alternating rounds x {part['steps']} steps)")
        print(f"{'network':<20}{'bare loop img/s':>17}{'trainer img/s':>15}{'trainer/bare':>14}{'epoch s':>10}")
        for name, row in part["networks"].items():
            label = "" if row["epoch_seconds_measured"] else " (extrapolated)"
            print(f"{name:<20}{statistics.median(row['bare_loop']):>17.1f}{statistics.median(row['trainer']):>15.1f}"
                  f"{row['trainer_vs_bare_loop']:>13.3f}x{row['epoch_seconds']:>10.1f}{label}")
        if args.only == "trainer":
            if args.json:
                Path(args.json).write_text(json.dumps(summary, indent=2))
            return 0

    # Training: separate processes (the allocator setting is process-wide), alternated over rounds so that
    # drift in a shared machine's load hits both sides alike. Inference: one process per round (see
    # measure_inference).
    results: dict = {}
    infer_runs: list[dict] = []
    common = ["--repeats", str(args.repeats), "--steps", str(args.steps), "--batch", str(args.batch),
              "--infer-batch", str(args.infer_batch)]
    common += ["--quick"] if args.quick else []
    common += ["--epochs", str(args.epochs)]
    for round_ in range(args.rounds):
        order = ("reference", "fast") if round_ % 2 == 0 else ("fast", "reference")
        modes = (order + (("compiled",) if round_ < args.compile_rounds else ())) if args.only != "infer" else ()
        modes += ("infer",) if round_ < args.infer_rounds and args.only in ("all", "infer") else ()
        for mode in modes:
            print(f"round {round_ + 1}/{args.rounds}: measuring {mode} ...", file=sys.stderr, flush=True)
            done = subprocess.run([sys.executable, __file__, "--worker", mode, *common], capture_output=True,
                                  text=True, check=True)
            part = json.loads(done.stdout.strip().splitlines()[-1])
            if mode == "infer":
                infer_runs.append(part)
            else:
                merge_round(results, mode, part)

    if results:
        print_training(summary, results, names, args)
    if infer_runs:
        print_inference(summary, infer_runs, infer, args)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


def med(values: list[float]) -> float:
    return statistics.median(values)


def print_training(summary: dict, results: dict, names: list[str], args: argparse.Namespace) -> None:
    """The reference/fast table, why each path was chosen, the compile table, and the targets' line."""
    ref, fast = results["reference"], results["fast"]
    summary.update({"threads": fast["threads"], "train": {}})
    print(f"training images/s (batch {args.batch}, {fast['threads']} threads; median [min-max] of "
          f"{args.rounds} rounds x {args.repeats} repeats x {args.steps} steps)")
    print(f"{'network':<24}{'reference':>22}{'fast':>22}{'speedup':>9}{'vs xception fast':>18}  fast path chosen "
          "(per round)")
    x_fast = med(fast["train"]["xception_c35_d20"])
    for name in names:
        r, f = ref["train"][name], fast["train"][name]
        chosen = [d["path"] for d in fast["decisions"][name]]
        row = {"reference": {"median": med(r), "min": min(r), "max": max(r)},
               "fast": {"median": med(f), "min": min(f), "max": max(f)},
               "train_speedup_vs_reference": med(f) / med(r),
               "train_ratio_vs_xception_c35_d20": med(f) / x_fast,
               "fast_path": chosen, "fast_decisions": fast["decisions"][name]}
        summary["train"][name] = row
        print(f"{name:<24}{med(r):>8.1f} [{min(r):5.1f}-{max(r):5.1f}]{med(f):>8.1f} [{min(f):5.1f}-{max(f):5.1f}]"
              f"{row['train_speedup_vs_reference']:>8.2f}x{row['train_ratio_vs_xception_c35_d20']:>17.2f}x  "
              f"{', '.join(chosen)}")
    print("\nwhy (first round; step = forward + backward, ms, the candidates timed in turns in the fast process; "
          "seconds spent deciding):")
    for name in names:
        d = fast["decisions"][name][0]
        steps = ", ".join(f"{k} {v:.0f}" for k, v in d["step_ms"].items())
        print(f"  {name}: {d['path']}: {d['reason']} [{steps}] {d['decide_seconds']:.0f} s")
    if "compiled" in results:
        print_compiled(summary, results, names, args)
    key = summary["train"]["igcv2_c64_d20"]
    summary["igcv2_c64_d20"] = {"train_speedup_vs_reference": key["train_speedup_vs_reference"],
                                "train_ratio_vs_xception_c35_d20": key["train_ratio_vs_xception_c35_d20"]}
    slower = [n for n in names if summary["train"][n]["fast"]["max"] < summary["train"][n]["reference"]["min"]]
    summary["train_slower_than_reference"] = slower
    print(f"\nigcv2_c64_d20: train speedup vs reference {key['train_speedup_vs_reference']:.2f}x (target >= 1.7), "
          f"vs Xception C35 d20 fast {key['train_ratio_vs_xception_c35_d20']:.2f}x (moonshot >= 1.0); "
          f"fast slower than reference beyond the spread (every fast round below every reference round): "
          f"{slower or 'none'}")


def print_compiled(summary: dict, results: dict, names: list[str], args: argparse.Namespace) -> None:
    compiled, fast = results["compiled"], results["fast"]
    print(f"\ntorch.compile ({len(compiled['decisions'][names[0]])} round(s); the decision is the library's own for "
          f"{args.epochs} epochs of 50,000 images, then the best eager path compiled and trained whatever was "
          "decided)")
    print(f"{'network':<24}{'compiled img/s':>16}{'vs fast':>9}{'compile s':>11}{'again s':>9}  decision")
    for name in names:
        c = compiled["train"][name]
        d = compiled["decisions"][name][0]
        summary["train"][name]["compiled"] = {"median": med(c), "min": min(c), "max": max(c),
                                              "vs_fast": med(c) / med(fast["train"][name]),
                                              "decisions": compiled["decisions"][name]}
        first = "-" if d["compile_seconds"] is None else f"{d['compile_seconds']:.0f}"
        print(f"{name:<24}{med(c):>16.1f}{med(c) / med(fast['train'][name]):>8.2f}x{first:>11}"
              f"{d['compile_again_seconds']:>9.0f}  {d['path']}: {d['reason']}")


def print_inference(summary: dict, infer_runs: list[dict], infer: list[str], args: argparse.Namespace) -> None:
    summary["infer"] = {}
    print(f"\ninference images/s, fast / reference (median of {len(infer_runs)} rounds x {args.repeats} "
          "alternating repeats; variant chosen by timing, most frequent shown)")
    print(f"{'network':<26}{'batch 1':>28}{f'batch {args.infer_batch}':>28}")
    slower = []
    for name in infer:
        cells = []
        summary["infer"][name] = {}
        for b in ("1", str(args.infer_batch)):
            r = [v for run in infer_runs for v in run[name][b]["reference"]]
            f = [v for run in infer_runs for v in run[name][b]["fast"]]
            variants = [run[name][b]["variant"] for run in infer_runs]
            variant = max(set(variants), key=variants.count)
            ratio = med(f) / med(r)
            summary["infer"][name][b] = {"reference": med(r), "fast": med(f), "ratio": ratio,
                                         "variant": variant, "variants": variants}
            if ratio < 0.95:
                slower.append(f"{name}@{b}")
            cells.append(f"{ratio:5.2f}x {variant:>20}")
        print(f"{name:<26}{cells[0]:>28}{cells[1]:>28}")
    summary["inference_slower_than_reference"] = slower
    print(f"inference slower than reference (>5%): {slower or 'none'}")


if __name__ == "__main__":
    sys.exit(main())
