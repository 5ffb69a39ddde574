/* The engine's thread count: the cgroup CPU quota reader on fake cgroup trees (v1, v2,
 * nested limits, a container's host path, absent or malformed files), the usable-CPU count
 * against the affinity mask, px_num_threads's precedence, and that the engine never changes
 * the process's OpenMP setting while its regions run on its own count. Per context: a CPU
 * context's own count (px_backend_set_threads) is the one its regions run on, and two model
 * handles on different counts (px_model_set_num_threads) give the same bits. */
#define _GNU_SOURCE
#include <math.h>
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
#include "model/model.h"
#include "platform.h"
#include "pxdiff.h"
#include "pxdiff_synthetic.h"
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

/* Two handles of one synthetic model (px_model_share: its own CPU context) and a model of its
 * own, each on its own count: each context reports its count, the designs compute on their
 * handle's context, and the denoised coordinates are bit-identical (poisoned outputs, fresh
 * random inputs), also after a count changes under existing designs. */
static void test_model_threads(void) {
  px_dims D;
  px_dims_released(&D);
  D.n_token_blocks = 1; /* the released widths, few blocks */
  D.n_enc_blocks = D.n_dec_blocks = 1;
  const int n_atom = 97 + (int)(tu_u64() % 40); /* a partial last trunk */
  px_synthetic_design sd;
  if (px_synthetic_design_make(&D, 10, 6, n_atom, tu_u64(), &sd) != PX_OK) {
    CHECK_MSG(0, "synthetic design: %s", px_last_error());
    return;
  }
  const uint64_t wseed = tu_u64();
  px_model *m[3] = {NULL, NULL, NULL};
  CHECK(px_model_synthetic(&D, wseed, &m[0]) == PX_OK);
  if (m[0]) CHECK(px_model_share(m[0], &m[1]) == PX_OK);
  CHECK(px_model_synthetic(&D, wseed, &m[2]) == PX_OK);
  if (!m[0] || !m[1] || !m[2]) goto done;
  px_backend *shared = px_cpu_backend();
  CHECK(m[0]->cpu_ctx && m[1]->cpu_ctx && m[2]->cpu_ctx && m[0]->cpu_ctx != m[1]->cpu_ctx &&
        m[0]->cpu_ctx != shared && m[1]->cpu_ctx != shared && m[2]->cpu_ctx != m[0]->cpu_ctx);
  const int want[3] = {1, 3, 0}; /* 0: the process's count */
  for (int k = 0; k < 3; k++) {
    CHECK(px_backend_threads(m[k]->cpu_ctx) == px_num_threads()); /* the default */
    CHECK_MSG(px_model_set_num_threads(m[k], want[k]) == PX_OK, "%s", px_last_error());
  }
  CHECK(px_backend_threads(m[0]->cpu_ctx) == 1 && px_backend_threads(m[1]->cpu_ctx) == 3 &&
        px_backend_threads(m[2]->cpu_ctx) == px_num_threads());
  CHECK(px_model_set_num_threads(m[0], -1) == PX_ERR_INPUT && px_backend_threads(m[0]->cpu_ctx) == 1);
  CHECK(px_model_set_num_threads(NULL, 2) == PX_ERR_INPUT);
  CHECK(px_backend_threads(shared) == px_num_threads()); /* untouched by the handles */

  const int S = 2;
  const size_t n = (size_t)S * sd.f.n_atom * 3;
  float *x = malloc(sizeof(float) * n), *y[3] = {malloc(sizeof(float) * n), malloc(sizeof(float) * n),
                                                  malloc(sizeof(float) * n)};
  float t[2] = {(float)(0.5 + 40 * tu_uniform()), (float)(0.5 + 40 * tu_uniform())};
  px_design *d[3] = {NULL, NULL, NULL};
  for (int k = 0; k < 3; k++) {
    CHECK_MSG(px_design_create(m[k], &sd.f, &d[k]) == PX_OK, "design %d: %s", k, px_last_error());
    if (d[k]) CHECK(d[k]->be == m[k]->cpu_ctx); /* the handle's context */
  }
  if (!x || !y[0] || !y[1] || !y[2] || !d[0] || !d[1] || !d[2]) goto out;
  for (int round = 0; round < 2; round++) {
    tu_fill_normal(x, n, 10.0);
    for (int k = 0; k < 3; k++) {
      for (size_t i = 0; i < n; i++) y[k][i] = NAN;
      CHECK_MSG(px_denoise(m[k], d[k], S, x, t, y[k]) == PX_OK, "denoise %d: %s", k, px_last_error());
    }
    CHECK(!isnan(y[0][0]) && !isnan(y[0][n - 1]));
    CHECK_MSG(!memcmp(y[0], y[1], sizeof(float) * n) && !memcmp(y[0], y[2], sizeof(float) * n),
              "round %d: handles on %d, %d and %d threads differ", round, px_backend_threads(m[0]->cpu_ctx),
              px_backend_threads(m[1]->cpu_ctx), px_backend_threads(m[2]->cpu_ctx));
    /* new counts under the existing designs, the other way round */
    CHECK(px_model_set_num_threads(m[0], 4) == PX_OK && px_model_set_num_threads(m[1], 0) == PX_OK &&
          px_model_set_num_threads(m[2], 2) == PX_OK);
    CHECK(px_backend_threads(d[0]->be) == 4 && px_backend_threads(d[1]->be) == px_num_threads() &&
          px_backend_threads(d[2]->be) == 2);
  }
out:
  for (int k = 0; k < 3; k++) {
    px_design_free(d[k]);
    free(y[k]);
  }
  free(x);
done:
  px_model_free(m[1]); /* the shared handle before the model it borrows from */
  px_model_free(m[0]);
  px_model_free(m[2]);
  px_synthetic_free(&sd);
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

  /* A context's own count: its regions run on it whatever the process's count (1 here), the
   * process's count when it has none; the shared context refuses one. Probe: 8 threads, more
   * than any region so far, so the pool must grow (it would not on the process's 1). */
  px_set_num_threads(1);
  px_backend *own = px_backend_create(PX_DEVICE_CPU, 0, PX_PRECISION_FP32);
  CHECK(own != NULL && own != cpu);
  CHECK(px_backend_set_threads(cpu, 2) == PX_ERR_BACKEND && px_backend_threads(cpu) == 1);
  if (own) {
    CHECK(px_backend_threads(own) == 1); /* 0: the process's */
    CHECK(px_backend_set_threads(own, -2) == PX_ERR_INPUT && own->threads == 0);
    CHECK(px_backend_set_threads(own, 8) == PX_OK && px_backend_threads(own) == 8 && px_num_threads() == 1);
    float *z = calloc((size_t)n, sizeof(float));
    CHECK(z != NULL);
#ifdef __linux__
    const int before8 = count_tasks();
#endif
    if (z) own->activation(own, n, z, PX_ACT_RELU);
#ifdef __linux__
    const int after8 = count_tasks();
    CHECK_MSG(before8 >= 1 && after8 >= before8 + 5, "process threads %d before, %d after an 8-thread region "
              "of a context (process count 1)", before8, after8);
#endif
    free(z);
    CHECK(px_backend_set_threads(own, 0) == PX_OK && px_backend_threads(own) == 1);
    px_backend_set_threads(own, 5000);
    CHECK(px_backend_threads(own) == 4096); /* px_set_num_threads's cap */
    px_backend_destroy(own);
  }
  px_set_num_threads(0);
  CHECK(omp_get_max_threads() == 1);
#endif
  test_model_threads();
  return tu_finish("test_threads");
}
