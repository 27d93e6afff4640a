"""The batched data path: data sets held in memory, each batch augmented as a whole on the training device.

* :mod:`.choice` — which path a run takes (``data.loader: auto|batched|per_image``) and why;
* :mod:`.resident` — the uint8 images as one tensor on the device;
* :mod:`.keyed_uniforms` — a view's random numbers as a pure function of (data seed, epoch, position);
* :mod:`.crop_params`, :mod:`.erasing` — timm's random-resized crop and random erasing, for a whole batch;
* :mod:`.resample` — PIL's resampling as per-view matrices (crop, resize, padded crop, flip);
* :mod:`.batch_transforms` — the training and validation transforms built from them;
* :mod:`.loader` — :class:`~.loader.BatchedLoader`, what the engine iterates.
"""
