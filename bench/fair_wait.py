"""How long a one-line request waits when it arrives during a large batch, in the service's
micro-batcher with the real classifier: answered when its own texts are done (now) against answered
when its whole model call ends (before), in one run.

    python bench/fair_wait.py                      # the shipped model, 64 long abstracts, then one line
    python bench/fair_wait.py --model tiny-bundle/ --texts 32 --delay 0.5

A model call takes at most ``--call-texts`` texts (the service's micro_batch_size, 16), shared fairly:
the one-liner joins the call after the one running when it arrives. Before, it was answered when
that call (with 15 long texts) ended; now it is answered after the call's first length-sorted
sub-batch, so its wait is at most the call already running plus one sub-batch.

    python bench/fair_wait.py --explain --texts 16  # the large request asks to explain its texts

``--explain``: the large request is ``--texts`` texts with ``options.explain`` (16: two of the
service's largest explained requests, max_explain_batch 8), fed as the service feeds it (``explain.expand``: each text then its variants, one
per sentence, as texts of the request in the fair queue), beside the same texts not explained.
"""

from __future__ import annotations

import argparse
import asyncio

import common  # noqa: F401
from common import machine, table


async def scenario(
    classifier, texts: list[str], one: str, delay: float, call_texts: int, streams: bool, explain: bool = False
) -> dict:
    from patentclf.inference.explain import expand
    from patentclf.inference.options import PredictOptions
    from patentclf.service.batching import MicroBatcher

    if streams:  # as the service's runtime: (text, options) items, each answered with its own options
        predict = lambda items: classifier.iter_predictions([t for t, _ in items], options=[o for _, o in items])  # noqa: E731
    else:
        predict = lambda items: classifier.predict([t for t, _ in items], options=[o for _, o in items])  # noqa: E731
    batcher = MicroBatcher(predict, streams=streams, max_queue=16, max_batch_texts=call_texts, max_wait_s=0.01)
    batcher.start()
    loop = asyncio.get_running_loop()
    expansion = expand(texts, [PredictOptions(explain=explain)] * len(texts))
    try:
        started = loop.time()
        batch = asyncio.create_task(batcher.submit(list(zip(expansion.texts, expansion.options))))
        await asyncio.sleep(delay)
        sent = loop.time()
        await batcher.submit([(one, PredictOptions())])
        one_wait = loop.time() - sent
        expansion.collect(await batch)
        return {"batch_s": loop.time() - started, "one_wait_s": one_wait, "model_texts": len(expansion.texts)}
    finally:
        await batcher.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="bundle folder (default: the shipped model)")
    parser.add_argument("--texts", type=int, default=64, help="long texts in the large request")
    parser.add_argument("--call-texts", type=int, default=16, help="most texts per model call (micro_batch_size)")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds between the batch and the one-liner")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--explain", action="store_true", help="the large request asks to explain its texts")
    args = parser.parse_args()

    from patentclf.corpus.data import load_split
    from patentclf.inference.classifier import Classifier

    classifier = Classifier.load(args.model)
    abstracts = sorted(load_split("bundled", "test").texts, key=len, reverse=True)
    texts = [abstracts[i % 200] for i in range(args.texts)]  # long abstracts: 256 tokens each, mostly
    classifier.predict(texts[:8])  # warm-up
    rows = []
    if args.explain:
        cases = [(True, False, "beside a batch not explained"), (True, True, "beside the batch explained")]
    else:
        cases = [(False, False, "answered when its call ends (before)"), (True, False, "answered when its texts are done (now)")]
    for streams, explain, name in cases:
        runs = [
            asyncio.run(scenario(classifier, texts, "a polymer", args.delay, args.call_texts, streams, explain))
            for _ in range(args.repeats)
        ]
        batch = min(r["batch_s"] for r in runs)
        wait = min(r["one_wait_s"] for r in runs)
        calls = -(-runs[0]["model_texts"] // args.call_texts)
        rows.append(
            [
                name,
                str(runs[0]["model_texts"]),
                str(calls),
                f"{batch:.1f}",
                f"{wait:.2f}",
                f"{wait / batch:.1%}",
                f"{batch / calls:.2f}",
            ]
        )
    print(f"machine: {machine()}")
    print(
        f"model: {classifier.path}; {args.texts} long texts, then one line {args.delay} s later; calls of {args.call_texts} texts"
    )
    print(table(["one-liner", "model texts", "calls", "batch s", "one-liner wait s", "wait / batch", "s per call"], rows))


if __name__ == "__main__":
    main()
