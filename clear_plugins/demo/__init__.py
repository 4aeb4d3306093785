"""``clear-plugins demo``: the whole CLEAR method end to end on one CPU machine, on easy-vqa.

Stage 0 (:mod:`.base`) pre-trains a small unified model built through the same classes as the 7B one; the shipped
checkpoint under ``resources/`` stands in for the pretrained model a real user downloads. :mod:`.world` holds the
data (easy-vqa, degradations, the word-level tokenizer); :mod:`.pipeline` runs stages 1–5 and :mod:`.report` writes
the report. Heavy imports (torch) happen inside the functions that need them.
"""
