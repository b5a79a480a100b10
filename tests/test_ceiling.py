"""The benchmark ceilings (_ceiling.pyx): the bare loop and the checked loop
translate hand-built arrays as the layouts would, and the checked loop reports
each failure with the core's status."""

import numpy as np

from its_core.core._core import TranslationStatus as S
from its_core.tools._ceiling import bare_translate, checked_translate


def _arrays():
    # device 0: 4 events (2 bits) at ITE 0; device 1: unmapped; device 2: 1 bit at ITE 4
    devices = np.array([(0 << 8) | 2, 0, (4 << 8) | 1, 0], np.uint64)
    ites = np.zeros(8, np.uint64)
    ites[0] = (8192 << 16) | 3          # pINTID 8192, ICID 3
    ites[1] = (9000 << 16) | 7          # ICID 7: unmapped collection
    ites[5] = (8300 << 16) | 3
    collection_cpu = np.full(65536, -1, np.int32)
    collection_cpu[3] = 2
    return devices, ites, collection_cpu


def test_checked_loop_statuses():
    devices, ites, collection_cpu = _arrays()
    pairs = [(0, 0, S.OK, 8192, 2), (2, 1, S.OK, 8300, 2), (0, 1, S.NO_COLLECTION, 0, -1),
             (0, 2, S.NO_MAPPING, 0, -1), (0, 4, S.EVENT_OUT_OF_RANGE, 0, -1),
             (1, 0, S.NO_DEVICE, 0, -1), (4, 0, S.DEVICE_OUT_OF_RANGE, 0, -1),
             (2, 2, S.EVENT_OUT_OF_RANGE, 0, -1)]
    device_ids = np.array([p[0] for p in pairs], np.uint32)
    event_ids = np.array([p[1] for p in pairs], np.uint32)
    intids = np.full(len(pairs), 77, np.uint32)
    cpus = np.full(len(pairs), 77, np.int32)
    statuses = np.full(len(pairs), 77, np.uint8)
    checked_translate(devices, 2, ites, collection_cpu, device_ids, event_ids,
                      intids, cpus, statuses)
    assert statuses.tolist() == [p[2] for p in pairs]
    assert intids.tolist() == [p[3] for p in pairs]
    assert cpus.tolist() == [p[4] for p in pairs]


def test_bare_loop_agrees_on_mapped_pairs():
    devices, ites, collection_cpu = _arrays()
    device_base = (devices >> np.uint64(8)).astype(np.uint64)
    device_ids = np.array([0, 2], np.uint32)
    event_ids = np.array([0, 1], np.uint32)
    intids = np.zeros(2, np.uint32)
    cpus = np.zeros(2, np.int32)
    bare_translate(device_base, ites, collection_cpu, device_ids, event_ids, intids, cpus)
    assert intids.tolist() == [8192, 8300] and cpus.tolist() == [2, 2]
