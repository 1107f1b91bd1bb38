"""Datasets for Fast R-CNN training and evaluation (see docs/data.md).

records (ImageRecord, DetectionDataset, Minibatch) - build (build_dataset) - voc, coco (loaders) -
proposals (files, validation) - synthetic (the built-in dataset) - selective_search (optional) -
transforms (load_image, prepare_image) - loader (TrainLoader) - stats (data inspect) - boxes -
prepare (lay out and check the paper's VOC07 inputs: `data prepare voc07`).
"""
