"""Writes the committed inputs of the trained models' C# tests: rendered shapes-world PNGs and espeak-ng
WAVs in the held-out voice, with index.json naming what each shows or says (and what the pixel judge
reads from each PNG). Needs numpy, PIL and an espeak-ng on PATH (or $ESPEAK).

usage: python make_test_inputs.py OUT_DIR"""
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
SPOKEN = ["a red triangle", "a small blue circle on a white background", "a large green star on a black background"]


def main(out: str) -> None:
    os.makedirs(out, exist_ok=True)
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
        index["speech"].append({"file": name, "text": text, "voice": HELD_OUT_VOICE, "speed": HELD_OUT_SPEED, "pitch": PITCH})
    with open(os.path.join(out, "index.json"), "w", encoding="utf-8") as f:
        json.dump(index, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main(sys.argv[1])
