/* POSIX implementation of platform.h. */
#if defined(__linux__)
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT_S */
#include <sched.h>
#else
#define _POSIX_C_SOURCE 200809L
#endif
#include "platform.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#endif

int px_file_open_read(const char *path) { return open(path, O_RDONLY); }

void px_file_close(int fd) {
  if (fd >= 0) close(fd);
}

int64_t px_file_size(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return -1;
  if (!S_ISREG(st.st_mode)) return -1;
  return (int64_t)st.st_size;
}

int px_file_pread(int fd, void *buf, size_t n, uint64_t offset) {
  char *p = (char *)buf;
  while (n > 0) {
    ssize_t r = pread(fd, p, n, (off_t)offset);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) return -1; /* short file */
    p += r;
    n -= (size_t)r;
    offset += (uint64_t)r;
  }
  return 0;
}

int px_file_write_atomic(const char *path, const void *buf, size_t n) {
  size_t len = strlen(path);
  char *tmp = malloc(len + 16);
  if (!tmp) return -1;
  snprintf(tmp, len + 16, "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    free(tmp);
    return -1;
  }
  const char *p = (const char *)buf;
  size_t left = n;
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w < 0) {
      if (errno == EINTR) continue;
      close(fd);
      unlink(tmp);
      free(tmp);
      return -1;
    }
    p += w;
    left -= (size_t)w;
  }
  if (close(fd) != 0 || rename(tmp, path) != 0) {
    unlink(tmp);
    free(tmp);
    return -1;
  }
  free(tmp);
  return 0;
}

int px_file_rename(const char *from, const char *to) { return rename(from, to); }

double px_time_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int px_cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

/* The whole of a small text file, NUL-terminated; 0 or -1. */
static int read_small(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, cap - 1, f);
  int bad = ferror(f);
  fclose(f);
  if (bad) return -1;
  buf[n] = '\0';
  return 0;
}

/* ceil(quota / period) for a quota in force, else 0. */
static int quota_cpus(long long quota, long long period) {
  if (quota <= 0 || period <= 0) return 0;
  long long c = (quota + period - 1) / period;
  return c > 1000000 ? 1000000 : (int)c;
}

/* The quota of one cgroup directory: v2 "cpu.max" ("max 100000" or "200000 100000") or v1
 * cpu.cfs_quota_us (-1: none) over cpu.cfs_period_us. */
static int dir_cpu_limit(const char *dir, int v2) {
  char path[4096], buf[256];
  if (v2) {
    if (snprintf(path, sizeof path, "%s/cpu.max", dir) >= (int)sizeof path) return 0;
    if (read_small(path, buf, sizeof buf) != 0) return 0;
    long long q, p;
    if (sscanf(buf, "%lld %lld", &q, &p) != 2) return 0; /* "max ..." does not parse: none */
    return quota_cpus(q, p);
  }
  long long q, p;
  if (snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", dir) >= (int)sizeof path) return 0;
  if (read_small(path, buf, sizeof buf) != 0 || sscanf(buf, "%lld", &q) != 1) return 0;
  if (snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir) >= (int)sizeof path) return 0;
  if (read_small(path, buf, sizeof buf) != 0 || sscanf(buf, "%lld", &p) != 1) return 0;
  return quota_cpus(q, p);
}

/* The tightest quota on `rel` (a cgroup path, "/a/b") and its parents under `mount`. Walking
 * up also covers a container whose own cgroup is mounted at the root while /proc/self/cgroup
 * still names the host's path. */
static int tree_cpu_limit(const char *mount, const char *rel, int v2) {
  char dir[4096];
  int best = 0;
  if (snprintf(dir, sizeof dir, "%s%s", mount, rel) >= (int)sizeof dir) return 0;
  size_t root_len = strlen(mount);
  for (;;) {
    size_t len = strlen(dir);
    while (len > root_len && dir[len - 1] == '/') dir[--len] = '\0';
    int c = dir_cpu_limit(dir, v2);
    if (c > 0 && (best == 0 || c < best)) best = c;
    if (len <= root_len) break;
    char *slash = strrchr(dir + root_len, '/');
    if (!slash) slash = dir + root_len;
    *slash = '\0';
  }
  return best;
}

int px_cgroup_cpu_limit(const char *proc_cgroup, const char *cgroup_root) {
  char buf[16384];
  if (!proc_cgroup || !cgroup_root || read_small(proc_cgroup, buf, sizeof buf) != 0) return 0;
  int best = 0;
  char *save = NULL;
  for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    /* "hierarchy-id:controller,list:/path" */
    char *c1 = strchr(line, ':');
    if (!c1) continue;
    char *c2 = strchr(c1 + 1, ':');
    if (!c2) continue;
    *c1 = '\0';
    *c2 = '\0';
    const char *ctrls = c1 + 1, *rel = c2 + 1;
    char mount[4096];
    int c = 0;
    if (!strcmp(line, "0") && !*ctrls) { /* cgroup v2, unified */
      c = tree_cpu_limit(cgroup_root, rel, 1);
      if (snprintf(mount, sizeof mount, "%s/unified", cgroup_root) < (int)sizeof mount) {
        int u = tree_cpu_limit(mount, rel, 1); /* hybrid layout */
        if (u > 0 && (c == 0 || u < c)) c = u;
      }
    } else { /* cgroup v1: the hierarchy that has the "cpu" controller */
      int has_cpu = 0;
      for (const char *p = ctrls; *p;) {
        size_t n = strcspn(p, ",");
        if (n == 3 && !strncmp(p, "cpu", 3)) has_cpu = 1;
        p += n;
        if (*p == ',') p++;
      }
      if (!has_cpu) continue;
      const char *names[2] = {ctrls, "cpu"}; /* mounted as "cpu,cpuacct" (+ a "cpu" link) */
      for (int k = 0; k < 2; k++) {
        if (snprintf(mount, sizeof mount, "%s/%s", cgroup_root, names[k]) >= (int)sizeof mount) continue;
        int v = tree_cpu_limit(mount, rel, 0);
        if (v > 0 && (c == 0 || v < c)) c = v;
      }
    }
    if (c > 0 && (best == 0 || c < best)) best = c;
  }
  return best;
}

int px_usable_cpus(void) {
  int n = px_cpu_count();
#if defined(__linux__)
  /* The affinity mask (taskset, a batch scheduler's cpuset, os.sched_setaffinity). */
  for (int ncpu = 1024; ncpu <= (1 << 20); ncpu *= 2) {
    cpu_set_t *set = CPU_ALLOC(ncpu);
    if (!set) break;
    size_t sz = CPU_ALLOC_SIZE(ncpu);
    CPU_ZERO_S(sz, set);
    if (sched_getaffinity(0, sz, set) == 0) {
      int c = CPU_COUNT_S(sz, set);
      if (c > 0) n = c;
      CPU_FREE(set);
      break;
    }
    CPU_FREE(set);
    if (errno != EINVAL) break; /* EINVAL: the kernel's mask is larger, retry bigger */
  }
  /* A CPU quota (docker --cpus, Kubernetes limits, systemd CPUQuota). */
  int q = px_cgroup_cpu_limit("/proc/self/cgroup", "/sys/fs/cgroup");
  if (q > 0 && q < n) n = q;
#endif
  return n > 0 ? n : 1;
}

int px_isatty(int fd) { return isatty(fd) ? 1 : 0; }

int px_mkdir_p(const char *path) {
  if (!path || !*path) {
    errno = ENOENT;
    return -1;
  }
  size_t len = strlen(path);
  char *p = malloc(len + 1);
  if (!p) return -1;
  memcpy(p, path, len + 1);
  for (size_t i = 1; i <= len; i++) {
    if (p[i] != '/' && p[i] != '\0') continue;
    if (p[i - 1] == '/') continue; /* repeated slashes */
    char saved = p[i];
    p[i] = '\0';
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
      int e = errno;
      free(p);
      errno = e;
      return -1;
    }
    p[i] = saved;
  }
  struct stat st;
  int rc = stat(path, &st);
  free(p);
  if (rc != 0) return -1;
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------- threads -- */

struct px_thread {
  pthread_t t;
};
struct px_mutex {
  pthread_mutex_t m;
};

int px_thread_start(px_thread **out, void *(*fn)(void *), void *arg) {
  *out = NULL;
  px_thread *t = malloc(sizeof *t);
  if (!t) return -1;
  if (pthread_create(&t->t, NULL, fn, arg) != 0) {
    free(t);
    return -1;
  }
  *out = t;
  return 0;
}

void px_thread_join(px_thread *t) {
  if (!t) return;
  pthread_join(t->t, NULL);
  free(t);
}

px_mutex *px_mutex_new(void) {
  px_mutex *m = malloc(sizeof *m);
  if (m && pthread_mutex_init(&m->m, NULL) != 0) {
    free(m);
    return NULL;
  }
  return m;
}

void px_mutex_lock(px_mutex *m) { pthread_mutex_lock(&m->m); }
void px_mutex_unlock(px_mutex *m) { pthread_mutex_unlock(&m->m); }
int px_mutex_trylock(px_mutex *m) { return pthread_mutex_trylock(&m->m) == 0; }

void px_sleep(double s) {
  if (!(s > 0)) return;
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

void px_mutex_free(px_mutex *m) {
  if (!m) return;
  pthread_mutex_destroy(&m->m);
  free(m);
}

int px_amx_tile_permit(void) {
#if defined(__linux__) && defined(__x86_64__) && defined(SYS_arch_prctl)
  /* arch/x86/include/uapi/asm/prctl.h (Linux 5.16); older kernels answer EINVAL: no AMX. */
  const int req_perm = 0x1023, get_perm = 0x1022, xtiledata = 18;
  if (syscall(SYS_arch_prctl, req_perm, xtiledata) != 0) return 0;
  unsigned long long granted = 0;
  if (syscall(SYS_arch_prctl, get_perm, &granted) != 0) return 0;
  return (int)((granted >> xtiledata) & 1u);
#else
  return 0;
#endif
}

char *px_path_join(const char *a, const char *b) {
  size_t la = strlen(a), lb = b ? strlen(b) : 0;
  char *p = malloc(la + lb + 2);
  if (!p) return NULL;
  memcpy(p, a, la);
  size_t k = la;
  if (lb) {
    if (la && a[la - 1] != '/') p[k++] = '/';
    memcpy(p + k, b, lb);
    k += lb;
  }
  p[k] = '\0';
  return p;
}
