/* The engine's thread count: the cgroup CPU quota reader on fake cgroup trees (v1, v2,
 * nested limits, a container's host path, absent or malformed files), the usable-CPU count
 * against the affinity mask, px_num_threads's precedence, and that the engine never changes
 * the process's OpenMP setting while its regions run on its own count. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <sched.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend.h"
#include "platform.h"
#include "pxdiff.h"
#include "testutil.h"

static char root[512];

#ifdef __linux__
#include <dirent.h>
/* OS threads of this process. */
static int count_tasks(void) {
  DIR *d = opendir("/proc/self/task");
  if (!d) return -1;
  int n = 0;
  for (struct dirent *e; (e = readdir(d));)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}
#endif

static void put(const char *rel, const char *text) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", root, rel);
  /* parents */
  for (char *p = path + strlen(root) + 1; *p; p++)
    if (*p == '/') {
      *p = '\0';
      mkdir(path, 0755);
      *p = '/';
    }
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  if (f) {
    fputs(text, f);
    fclose(f);
  }
}

static int limit(const char *proc_rel) {
  char proc[1024], cg[1024];
  snprintf(proc, sizeof proc, "%s/%s", root, proc_rel);
  snprintf(cg, sizeof cg, "%s/cg", root);
  return px_cgroup_cpu_limit(proc, cg);
}

int main(void) {
  snprintf(root, sizeof root, "/tmp/pxdiff_test_threads_%d", (int)getpid());
  mkdir(root, 0755);

  /* cgroup v2: quota of 2.5 CPUs on the process's group -> 3; a parent's 2 CPUs is tighter. */
  put("v2/cgroup", "0::/user.slice/job\n");
  put("cg/user.slice/job/cpu.max", "250000 100000\n");
  CHECK_MSG(limit("v2/cgroup") == 3, "got %d", limit("v2/cgroup"));
  put("cg/user.slice/cpu.max", "200000 100000\n");
  CHECK_MSG(limit("v2/cgroup") == 2, "got %d", limit("v2/cgroup"));
  /* "max": no limit there; the parent's still applies */
  put("cg/user.slice/cpu.max", "max 100000\n");
  put("cg/user.slice/job/cpu.max", "max 100000\n");
  CHECK_MSG(limit("v2/cgroup") == 0, "got %d", limit("v2/cgroup"));
  /* a container: /proc/self/cgroup names a host path that is not under the mount, whose
   * root is the container's own group */
  put("v2c/cgroup", "0::/kubepods/pod1/abc\n");
  put("cg/cpu.max", "150000 100000\n");
  CHECK_MSG(limit("v2c/cgroup") == 2, "got %d", limit("v2c/cgroup"));
  /* malformed values are ignored, not misread */
  put("cg/cpu.max", "lots\n");
  CHECK_MSG(limit("v2c/cgroup") == 0, "got %d", limit("v2c/cgroup"));
  put("cg/cpu.max", "-5 100000\n");
  CHECK_MSG(limit("v2c/cgroup") == 0, "got %d", limit("v2c/cgroup"));
  put("cg/cpu.max", "max 100000\n");

  /* cgroup v1: the "cpu,cpuacct" hierarchy; quota -1 is no limit */
  put("v1/cgroup", "4:memory:/x\n3:cpu,cpuacct:/docker/c1\n1:name=systemd:/\n");
  put("cg/cpu,cpuacct/docker/c1/cpu.cfs_quota_us", "-1\n");
  put("cg/cpu,cpuacct/docker/c1/cpu.cfs_period_us", "100000\n");
  CHECK_MSG(limit("v1/cgroup") == 0, "got %d", limit("v1/cgroup"));
  put("cg/cpu,cpuacct/docker/c1/cpu.cfs_quota_us", "50000\n");
  CHECK_MSG(limit("v1/cgroup") == 1, "got %d", limit("v1/cgroup"));
  put("cg/cpu,cpuacct/docker/c1/cpu.cfs_quota_us", "400000\n");
  CHECK_MSG(limit("v1/cgroup") == 4, "got %d", limit("v1/cgroup"));
  /* "cpuacct" alone is not the cpu controller */
  put("v1b/cgroup", "2:cpuacct:/docker/c1\n");
  CHECK_MSG(limit("v1b/cgroup") == 0, "got %d", limit("v1b/cgroup"));
  /* separately mounted "cpu" hierarchy */
  put("v1c/cgroup", "1:cpu:/j\n");
  put("cg/cpu/j/cpu.cfs_quota_us", "300000\n");
  put("cg/cpu/j/cpu.cfs_period_us", "100000\n");
  CHECK_MSG(limit("v1c/cgroup") == 3, "got %d", limit("v1c/cgroup"));
  /* nothing readable */
  CHECK(limit("absent/cgroup") == 0);
  put("garbage/cgroup", "no colons here\n::\n0:\n");
  CHECK(limit("garbage/cgroup") == 0);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  CHECK(system(cmd) == 0);

  /* usable CPUs: at least 1, at most the online count, and the affinity mask's size */
  const int usable = px_usable_cpus();
  CHECK(usable >= 1 && usable <= px_cpu_count());
#ifdef __linux__
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int q = px_cgroup_cpu_limit("/proc/self/cgroup", "/sys/fs/cgroup");
    int want = CPU_COUNT(&set);
    if (q > 0 && q < want) want = q;
    CHECK_MSG(usable == want, "usable %d, expected %d", usable, want);
  }
#endif

  /* px_num_threads: env (read once) or usable CPUs; px_set_num_threads wins; <= 0 resets */
  const char *env = getenv("PXDIFF_NUM_THREADS");
  const int dflt = px_num_threads();
  if (env && atoi(env) > 0)
    CHECK_MSG(dflt == atoi(env), "default %d with PXDIFF_NUM_THREADS=%s", dflt, env);
  else
    CHECK_MSG(dflt == usable, "default %d, usable %d", dflt, usable);
  px_set_num_threads(7);
  CHECK(px_num_threads() == 7);
  px_set_num_threads(0);
  CHECK(px_num_threads() == dflt);
  px_set_num_threads(-3);
  CHECK(px_num_threads() == dflt);

#ifdef _OPENMP
  /* The host's OpenMP setting is the host's: the host sets 1, the engine still runs its
   * regions on its own count (probe: the OS threads of the process, libgomp keeping its
   * pool), and the host's setting is 1 afterwards. */
  omp_set_num_threads(1);
  px_set_num_threads(3);
  const int64_t n = 1 << 20;
  float *x = calloc((size_t)n, sizeof(float));
  CHECK(x != NULL);
#ifdef __linux__
  const int before = count_tasks();
#endif
  px_backend *cpu = px_cpu_backend();
  if (x) cpu->activation(cpu, n, x, PX_ACT_RELU);
#ifdef __linux__
  const int after = count_tasks();
  CHECK_MSG(before >= 1 && after >= before + 2, "process threads %d before, %d after a 3-thread region",
            before, after);
#endif
  free(x);
  CHECK(omp_get_max_threads() == 1);
  px_set_num_threads(0);
  CHECK(omp_get_max_threads() == 1);
#endif
  return tu_finish("test_threads");
}
