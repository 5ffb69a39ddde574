/* The one place for operating-system calls (POSIX: Linux and macOS).
 * Everything else in src/ is plain C11 and calls these. */
#ifndef PX_PLATFORM_H
#define PX_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

/* Open a file for reading; returns fd >= 0 or -1 (errno set). */
int px_file_open_read(const char *path);
void px_file_close(int fd);
/* Size in bytes, or -1. */
int64_t px_file_size(int fd);
/* Read exactly n bytes at offset; 0 on success, -1 on error or short file. */
int px_file_pread(int fd, void *buf, size_t n, uint64_t offset);
/* Write a whole buffer to path atomically (path.tmp, fsync-free rename). 0 or -1. */
int px_file_write_atomic(const char *path, const void *buf, size_t n);
/* Rename, 0 or -1. */
int px_file_rename(const char *from, const char *to);
/* Monotonic seconds. */
double px_time_now(void);
/* Logical CPUs online. */
int px_cpu_count(void);
/* CPUs this process may actually use: px_cpu_count() narrowed by the CPU affinity mask and
 * by a cgroup CPU quota (rounded up) on Linux; px_cpu_count() elsewhere. At least 1. */
int px_usable_cpus(void);
/* The cgroup CPU quota in CPUs (rounded up) read from a /proc/self/cgroup-style file and a
 * cgroup mount root (v2 cpu.max, v1 cpu.cfs_quota_us / cpu.cfs_period_us, the tightest
 * along the process's cgroup and its parents); 0 when there is none or nothing is readable.
 * Takes the paths so that a test can point it at a fake tree. */
int px_cgroup_cpu_limit(const char *proc_cgroup, const char *cgroup_root);
/* 1 when fd is a terminal. */
int px_isatty(int fd);
/* Create a directory and its missing parents (mode 0755); 0 when it exists as a
 * directory afterwards, -1 otherwise (errno set; ENOTDIR when a component is a file). */
int px_mkdir_p(const char *path);
/* "a/b" (no second '/' when a ends with one), or a copy of a when b is NULL or empty;
 * malloc'd, NULL when out of memory. */
char *px_path_join(const char *a, const char *b);
/* Threads and a mutex (POSIX threads): `pxdiff design`'s one worker per backend context. */
typedef struct px_thread px_thread;
typedef struct px_mutex px_mutex;
/* Starts fn(arg) on a new thread; 0, or -1 when no thread could be made. */
int px_thread_start(px_thread **out, void *(*fn)(void *), void *arg);
/* Waits for the thread to end and frees it (NULL: no-op). */
void px_thread_join(px_thread *t);
px_mutex *px_mutex_new(void); /* NULL when out of memory */
void px_mutex_lock(px_mutex *m);
void px_mutex_unlock(px_mutex *m);
/* 1 when the lock was taken, 0 when another thread holds it (no wait). */
int px_mutex_trylock(px_mutex *m);
/* Sleeps about s seconds. */
void px_sleep(double s);
void px_mutex_free(px_mutex *m);
/* Asks the OS to let this process use the AMX tile registers (their 8 KB of state is saved
 * per thread only for processes that asked: Linux's arch_prctl(ARCH_REQ_XCOMP_PERM,
 * XFEATURE_XTILEDATA), granted to every thread of the process). 1 when granted, 0 when refused
 * or not on x86-64 Linux. The caller checks the CPU itself (CPUID); this is the OS's half. */
int px_amx_tile_permit(void);

#endif
