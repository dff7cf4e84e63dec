"""lm-evaluation-harness (`lm-eval` from PyPI, unmodified) against `llm42 serve` with
SmolLM2-135M-Instruct, over the small local tasks in tests/eval/:
- local-completions: a multiple-choice task (loglikelihood: echo + logprobs of each choice) and
  a generation task, with the server's tokenizer (tokenizer_backend=remote: /tokenize,
  /detokenize, /tokenizer_info);
- local-chat-completions with --apply_chat_template: a chat task.
Deterministic requests (serve --default-deterministic, since lm-eval cannot add the field) must
give identical per-sample logprobs, generations and scores run alone and run again while other
clients load the server.

Skips when lm-eval is not installed (scripts/python-env.sh installs it) or SmolLM2 cannot be
fetched.
"""

import glob
import json
import os
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import server_util  # noqa: E402

server_util.llm42_bin()
try:
    import lm_eval  # noqa: F401
except ImportError:
    print("skipped: lm-eval is not installed (scripts/python-env.sh installs it)")
    sys.exit(server_util.SKIP)
MODEL = server_util.smollm2_model()

import openai  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NAME = "smollm2"


def run_lm_eval(server, kind, tasks, out_dir):
    """Runs lm_eval in the repository (the tasks' data paths are relative to it); returns
    ({task: metrics}, {task: [per-sample records]})."""
    if kind == "completions":
        args = ["--model", "local-completions", "--model_args",
                f"model={NAME},base_url=http://127.0.0.1:{server.port}/v1/completions,"
                "tokenizer_backend=remote,num_concurrent=4,max_retries=1"]
    else:
        args = ["--model", "local-chat-completions", "--apply_chat_template", "--model_args",
                f"model={NAME},base_url=http://127.0.0.1:{server.port}/v1/chat/completions,"
                "num_concurrent=4,max_retries=1"]
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1",
               HF_DATASETS_CACHE=os.path.join(out_dir, "hf-datasets"), TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "lm_eval", *args, "--tasks", ",".join(tasks),
           "--include_path", "tests/eval/tasks", "--log_samples", "--output_path", out_dir]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise AssertionError(f"lm_eval failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    (results_file,) = glob.glob(os.path.join(out_dir, NAME, "results_*.json"))
    with open(results_file) as f:
        results = json.load(f)["results"]
    samples = {}
    for task in tasks:
        (path,) = glob.glob(os.path.join(out_dir, NAME, f"samples_{task}_*.jsonl"))
        with open(path) as f:
            samples[task] = sorted((json.loads(line) for line in f), key=lambda s: s["doc_id"])
    return results, samples


class Traffic:
    """Other clients loading the server: deterministic and not, short and long, sampled."""

    def __init__(self, server, n_threads=3):
        self.server, self.stop, self.errors, self.sent = server, threading.Event(), [], 0
        self.threads = [threading.Thread(target=self.loop, args=(i,)) for i in range(n_threads)]

    def loop(self, i):
        c = openai.OpenAI(base_url=self.server.base_url, api_key="unused", max_retries=0)
        k = 0
        while not self.stop.is_set():
            k += 1
            try:
                c.completions.create(model=NAME, prompt=f"Story {i}.{k}: once upon a time",
                                     max_tokens=8 + 24 * ((i + k) % 3), temperature=0.9,
                                     extra_body={"deterministic": (i + k) % 2 == 0})
                self.sent += 1
            except Exception as e:  # noqa: BLE001
                self.errors.append(e)
                return

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()


def per_sample(samples):
    """What each sample's score is made of: the responses (loglikelihood and is-greedy pairs,
    or generated text) and the filtered ones."""
    return {task: [(s["doc_id"], s["resps"], s["filtered_resps"]) for s in rows]
            for task, rows in samples.items()}


class LmEvalTest(unittest.TestCase):
    def test_scores_and_samples_are_the_same_alone_and_under_load(self):
        runs = {
            "completions": ["llm42_facts_mc", "llm42_facts_qa"],
            "chat": ["llm42_facts_chat"],
        }
        with server_util.Server("--determinism", "dvr", "--default-deterministic",
                                "--served-model-name", NAME, model=MODEL) as server, \
                tempfile.TemporaryDirectory() as tmp:
            for kind, tasks in runs.items():
                alone = run_lm_eval(server, kind, tasks, os.path.join(tmp, kind + "-alone"))
                with Traffic(server) as traffic:
                    busy = run_lm_eval(server, kind, tasks, os.path.join(tmp, kind + "-busy"))
                self.assertEqual(traffic.errors, [])
                self.assertGreater(traffic.sent, 0, "no background traffic ran during the eval")
                self.assertEqual(per_sample(busy[1]), per_sample(alone[1]), kind)
                self.assertEqual(busy[0], alone[0], kind)
                for task in tasks:
                    metrics = alone[0][task]
                    print(f"{task}: {metrics} ({len(alone[1][task])} samples, "
                          f"{traffic.sent} background requests)")
                if kind == "completions":
                    # Scored from logprobs: each choice's (loglikelihood, is_greedy).
                    mc = alone[1]["llm42_facts_mc"]
                    self.assertEqual(len(mc), 24)
                    for s in mc:
                        self.assertEqual(len(s["resps"]), 4)
                        for ll, greedy in (r[0] for r in s["resps"]):
                            self.assertLess(float(ll), 0.0)
                            self.assertIn(str(greedy), ("True", "False"))

if __name__ == "__main__":
    server_util.run_tests()
