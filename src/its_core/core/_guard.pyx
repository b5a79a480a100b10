"""One writer at a time; readers never see a mutation half done.

A `TranslationTables` mutation may release the GIL half-way (numpy releases
it around large copies, and any allocation can run a garbage collection), and
a batch translation runs its loop without the GIL.  `TableGuard` keeps the
two apart, at the cost of a flag test per scalar read and two atomic
operations per batch:

* a writer opens a *write section* (`begin_write` / `end_write`): it takes
  the guard's lock (one writer at a time), raises the `writing` flag, and
  waits, without the GIL, until no native reader is in flight;
* a reader that holds the GIL from start to end and calls nothing that could
  release it (a scalar translation) only waits while another thread's write
  section is open (`wait_writer`);
* a reader that releases the GIL or calls back into Python while it reads
  *pins* the tables (`pin` / `unpin`): it waits for an open write section
  as above, then counts itself in `readers`, which no write section can
  start past.  `unpin` needs no GIL.

The write section is re-entrant within a thread, and the writer's own reads
do not wait for it.  Pins do not nest: a pinned reader must not call another
pinning method of the same tables (a writer waiting for the outer pin would
wait forever); a composite read takes the write section instead
(`TranslationTables.exclusive`).
"""

cdef extern from *:
    """
    #if defined(_MSC_VER)
    #include <windows.h>
    static long its_guard_add(long *value, long delta) {
        return InterlockedExchangeAdd(value, delta) + delta;
    }
    static long its_guard_load(long *value) { return InterlockedCompareExchange(value, 0, 0); }
    static void its_guard_pause(int round) { Sleep(round < 64 ? 0 : 1); }
    #else
    #include <sched.h>
    #include <time.h>
    static long its_guard_add(long *value, long delta) {
        return __atomic_add_fetch(value, delta, __ATOMIC_SEQ_CST);
    }
    static long its_guard_load(long *value) { return __atomic_load_n(value, __ATOMIC_SEQ_CST); }
    static void its_guard_pause(int round) {
        if (round < 64) { sched_yield(); return; }
        struct timespec pause = {0, 20000};      /* 20 us: a long batch is running */
        nanosleep(&pause, NULL);
    }
    #endif
    """
    long its_guard_add(long* value, long delta) nogil
    long its_guard_load(long* value) nogil
    void its_guard_pause(int round) nogil


cdef extern from "Python.h":
    PyThread_type_lock PyThread_allocate_lock()
    void PyThread_free_lock(PyThread_type_lock lock)
    int PyThread_acquire_lock(PyThread_type_lock lock, int waitflag) nogil
    void PyThread_release_lock(PyThread_type_lock lock) nogil
    unsigned long PyThread_get_thread_ident() nogil
    int WAIT_LOCK
    int NOWAIT_LOCK


cdef class TableGuard:
    """The write lock and reader count of one `TranslationTables`."""

    def __cinit__(self):
        self.lock = PyThread_allocate_lock()
        if self.lock == NULL:
            raise MemoryError("cannot allocate the tables' write lock")

    def __dealloc__(self):
        if self.lock != NULL:
            PyThread_free_lock(self.lock)

    cdef int _acquire(self) except -1:
        """Take the lock, releasing the GIL while another thread holds it."""
        if not PyThread_acquire_lock(self.lock, NOWAIT_LOCK):
            with nogil:
                PyThread_acquire_lock(self.lock, WAIT_LOCK)
        return 0

    cdef int begin_write(self) except -1:
        """Open (or re-enter) this thread's write section."""
        cdef unsigned long me = PyThread_get_thread_ident()
        cdef int round = 0
        if self.writing and self.writer_thread == me:
            self.writing += 1
            return 0
        self._acquire()
        self.writer_thread = me
        self.writing = 1
        self.writes += 1
        # New readers now wait; let the ones in flight finish (they do not
        # need the GIL to leave).
        while its_guard_load(&self.readers):
            with nogil:
                its_guard_pause(round)
            round += 1
        return 0

    cdef void end_write(self) noexcept:
        """Close one level of the write section; the last one releases the lock."""
        self.writing -= 1
        if self.writing == 0:
            self.writer_thread = 0
            PyThread_release_lock(self.lock)

    cdef int wait_writer(self) except -1:
        """Return once no other thread is inside a write section (GIL held
        on return, so none can start before the caller's next Python call)."""
        while self.writing and self.writer_thread != PyThread_get_thread_ident():
            self._acquire()
            PyThread_release_lock(self.lock)
        return 0

    cdef int pin(self) except -1:
        """Count the caller as a reader until `unpin`: no other thread's write
        section starts meanwhile (this thread's own may: it is the writer)."""
        self.wait_writer()
        its_guard_add(&self.readers, 1)
        return 0

    cdef void unpin(self) noexcept nogil:
        its_guard_add(&self.readers, -1)

    def cycle_pins(self, Py_ssize_t count):
        """Pin and unpin `count` times: the guard's fixed cost per batch, for
        benchmarks/bench_translate.py (nothing else should call it)."""
        cdef Py_ssize_t index
        for index in range(count):
            self.pin()
            self.unpin()

    @property
    def pinned(self):
        """Native readers in flight (for tests and diagnostics)."""
        return its_guard_load(&self.readers)
