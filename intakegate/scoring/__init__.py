"""The serving-time scoring path: text preparation, bounds, segments, tokenizer pins, the lexical
scorer, the logit range, score maths and the one `score_ticket`.

Nothing here imports the receipt: train, export and the runtime score the same way."""
