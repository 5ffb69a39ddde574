/* POSIX implementation of platform.h. */
#define _POSIX_C_SOURCE 200809L
#include "platform.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
