"""Teacher-output cache: record a teacher's logits once over the exact views a run will draw,
then distil any number of students from the recording with the results of live distillation.

    from ofakd.cache import TeacherCache, record_cache
    record_cache(cfg, "caches/t", topk=None)          # or `ofakd cache record ... --out caches/t`
    cache = TeacherCache("caches/t")
    logits = cache.read(epoch=0, step=0, rank=0)     # (batch_size, K) float32

Files: ``storage`` (layout, memory maps), ``manifest`` (fields and checks), ``topk`` (top-k
storage and reconstruction), ``reader`` (reading, run checks), ``cached_teacher`` (the replayed
teacher a run calls), ``record`` (recording).
Why the views are exact: :mod:`ofakd.data.views`.
"""

from ..errors import CacheError, CacheMismatchError
from .cached_teacher import CachedTeacher
from .reader import EpochReader, TeacherCache
from .record import record_cache
from .topk import encode_topk, reconstruct_topk

__all__ = [
    "CacheError",
    "CacheMismatchError",
    "CachedTeacher",
    "EpochReader",
    "TeacherCache",
    "encode_topk",
    "reconstruct_topk",
    "record_cache",
]

