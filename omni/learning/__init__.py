"""Learning: the models and their pretrained weights, datasets over the frame store, training, teachers, scoring, prediction, evaluation and its metrics, and the precision each device runs in."""
