"""What is in production at a push destination: the destination's own files are the truth
(versions, the push record, the history, the lock); ``record`` mirrors each change in ML-Metadata.
Here, below the Pusher, because the Pusher, the Trainer (warm start) and the Evaluator (baseline)
all read it."""
