# The thread contract of a TranslationTables (docs/threads.md): one writer at
# a time, and native readers that pin the arrays they read while the GIL is
# released.

cdef extern from "Python.h":
    ctypedef void* PyThread_type_lock


cdef class TableGuard:
    cdef long readers                   # native readers in flight (atomic)
    cdef readonly int writing           # depth of the open write section (GIL held)
    cdef readonly unsigned long long writes  # write sections opened so far (outermost ones)
    cdef unsigned long writer_thread    # thread that holds the write section
    cdef PyThread_type_lock lock        # held for the whole write section

    cdef int _acquire(self) except -1
    cdef int begin_write(self) except -1
    cdef void end_write(self) noexcept
    cdef int wait_writer(self) except -1
    cdef int pin(self) except -1
    cdef void unpin(self) noexcept nogil
