"""Writes the committed inputs of the trained models' C# tests: rendered shapes-world PNGs and espeak-ng
WAVs in the held-out voice, with index.json naming what each shows or says (and what the pixel judge
reads from each PNG); plus heldout/: N_HELD_OUT one-object scenes drawn from seeds training never uses
(caption, question and judge tests) and N_PROMPTS imagine prompts with the object each asks for, listed
in heldout/heldout.json. Needs numpy, PIL and an espeak-ng on PATH (or $ESPEAK).

usage: python make_test_inputs.py OUT_DIR [--held-out-only]"""
from __future__ import annotations

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shapes_world as W  # noqa: E402

HELD_OUT_VOICE, HELD_OUT_SPEED, PITCH = "en+f3", 155, 55      # train_speech.HELD_OUT, never trained on
SCENES = [
    W.Scene("white", (W.Obj("triangle", "red", "large", 32, 34),)),
    W.Scene("grey", (W.Obj("circle", "blue", "small", 20, 40),)),
    W.Scene("black", (W.Obj("star", "yellow", "large", 30, 30),)),
    W.Scene("white", (W.Obj("square", "green", "small", 44, 22),)),
    W.Scene("black", (W.Obj("circle", "purple", "large", 34, 30),)),
    W.Scene("grey", (W.Obj("star", "orange", "small", 40, 44),)),
    W.Scene("white", (W.Obj("square", "blue", "large", 26, 38), W.Obj("star", "red", "small", 50, 12))),
]
HELD_OUT_SEED = 777_000         # train_shapes.py draws from 4321 * 1_000_003 + i (and + 99, 77, 11 for its evals)
N_HELD_OUT, N_PROMPTS = 200, 50
SPOKEN = ["a red triangle", "a small blue circle on a white background", "a large green star on a black background"]


def spanish(text: str) -> str:
    """The Spanish target train_speech.phrases() pairs with an English caption or 'a COLOUR SHAPE' phrase."""
    for shape in W.SHAPES:
        for colour in W.COLOURS:
            short = W.caption_es(W.Scene("white", (W.Obj(shape, colour, "small", 32, 32),))).split(" sobre ")[0].rsplit(" ", 1)[0]
            if text == f"a {colour} {shape}":
                return short
            for size in W.SIZES:
                for bg in W.BACKGROUNDS:
                    s = W.Scene(bg, (W.Obj(shape, colour, size, 32, 32),))
                    if text == W.caption(s):
                        return W.caption_es(s)
    raise ValueError(text)


def held_out(out: str) -> None:
    """heldout/NNN.png and heldout.json: one-object scenes, and imagine prompts (one object each)."""
    import random
    d = os.path.join(out, "heldout")
    os.makedirs(d, exist_ok=True)
    index = {"seed": HELD_OUT_SEED, "images": [], "prompts": []}
    for i in range(N_HELD_OUT):
        s = W.random_scene(random.Random(HELD_OUT_SEED + i), 0.0)
        o = s.objects[0]
        name = f"{i:03d}.png"
        img = W.render(s)
        img.save(os.path.join(d, name), optimize=True)
        index["images"].append({"file": name, "caption": W.caption(s), "shape": o.shape, "colour": o.colour, "size": o.size,
                                "background": s.background})
    rng = random.Random(HELD_OUT_SEED - 1)
    for _ in range(N_PROMPTS):
        s = W.random_scene(rng, 0.0)
        index["prompts"].append({"prompt": W.imagine_prompt(rng, s), "shape": s.objects[0].shape, "colour": s.objects[0].colour})
    with open(os.path.join(d, "heldout.json"), "w", encoding="utf-8") as f:
        json.dump(index, f, indent=0, ensure_ascii=False)


def main(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    held_out(out)
    index = {"images": [], "speech": []}
    for s in SCENES:
        name = "_".join(f"{o.colour}_{o.shape}" for o in s.objects) + f"_on_{s.background}.png"
        img = W.render(s)
        img.save(os.path.join(out, name), optimize=True)
        index["images"].append({"file": name, "caption": W.caption(s), "caption_es": W.caption_es(s),
                                "objects": [{"shape": o.shape, "colour": o.colour, "size": o.size} for o in s.objects],
                                "background": s.background, "questions": [list(q) for q in W.questions(s)],
                                "judge": W.judge(img)})
    espeak = os.environ.get("ESPEAK", "espeak-ng")
    for text in SPOKEN:
        name = text.replace(" ", "_") + ".wav"
        subprocess.run([espeak, "-v", HELD_OUT_VOICE, "-s", str(HELD_OUT_SPEED), "-p", str(PITCH), "-w", os.path.join(out, name), text],
                       check=True)
        index["speech"].append({"file": name, "text": text, "text_es": spanish(text), "voice": HELD_OUT_VOICE, "speed": HELD_OUT_SPEED, "pitch": PITCH})
    with open(os.path.join(out, "index.json"), "w", encoding="utf-8") as f:
        json.dump(index, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    if "--held-out-only" in sys.argv[2:]:
        held_out(sys.argv[1])
    else:
        main(sys.argv[1])
