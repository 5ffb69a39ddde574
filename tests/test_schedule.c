/* Sampler defaults, eta schedules and the noise schedule against upstream's values
 * (tests/data/reference/noise_schedules_cuda.txt: torch on an H200, bfloat16 and float32;
 * the file is part of the repository, so a missing one fails the test). */
#include "pxdiff.h"
#include "testutil.h"

/* Relative to the repository root, where the suite runs; PXDIFF_TEST_DATA names another
 * copy of tests/data. */
#define REF_FILE "reference/noise_schedules_cuda.txt"

static uint32_t bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static void test_defaults(void) {
  px_sampler_config c;
  memset(&c, 0x5a, sizeof c);
  px_sampler_config_default(&c);
  CHECK(c.n_step == 400);
  CHECK(c.gamma0 == 1.0f);
  CHECK(c.gamma_min == 0.01f);
  CHECK(c.noise_scale_lambda == 1.003f);
  CHECK(c.eta_type == PX_ETA_CONST);
  CHECK(c.eta_min == 2.5f && c.eta_max == 2.5f);
  CHECK(c.schedule_bf16 == 1);
  CHECK(c.s_max == 160.0f && c.s_min == 4e-4f && c.rho == 7.0f && c.sigma_data == 16.0f);
  CHECK(c.seed == 0);
}

static void test_names(void) {
  const char *names[] = {"const",     "linear",       "poly",        "cos",
                         "piecewise", "piecewise_65", "piecewise_70"};
  const int types[] = {PX_ETA_CONST,     PX_ETA_LINEAR,       PX_ETA_POLY,        PX_ETA_COS,
                       PX_ETA_PIECEWISE, PX_ETA_PIECEWISE_65, PX_ETA_PIECEWISE_70};
  for (int i = 0; i < 7; i++) {
    CHECK(px_eta_type_from_name(names[i]) == types[i]);
    CHECK(strcmp(px_eta_type_name(types[i]), names[i]) == 0);
  }
  CHECK(px_eta_type_from_name(NULL) == PX_ETA_INVALID);
  CHECK(px_eta_type_from_name("") == PX_ETA_INVALID);
  CHECK(px_eta_type_from_name("Const") == PX_ETA_INVALID);
  CHECK(px_eta_type_from_name("piecewise_6") == PX_ETA_INVALID);
  CHECK(PX_ETA_INVALID == -1);
  CHECK(px_eta_type_name(PX_ETA_INVALID) != NULL && px_eta_type_name(7) != NULL);
}

static int near(float a, double b) { return fabs((double)a - b) <= 1e-6 * fmax(1.0, fabs(b)); }

static void test_eta(void) {
  px_sampler_config c;
  px_sampler_config_default(&c);
  /* default: const 2.5 everywhere */
  for (int k = 0; k < c.n_step; k++) CHECK(px_eta(&c, k) == 2.5f);

  /* N_step = 9 -> K = 10, so k/K = k/10; min 1, max 2.5 */
  c.n_step = 9;
  c.eta_min = 1.0f;
  c.eta_max = 2.5f;
  c.eta_type = PX_ETA_CONST;
  CHECK(px_eta(&c, 0) == 1.0f && px_eta(&c, 8) == 1.0f);
  c.eta_type = PX_ETA_LINEAR;
  CHECK(px_eta(&c, 0) == 1.0f);
  CHECK(near(px_eta(&c, 3), 1.45)); /* 1 + 1.5 * 0.3 */
  CHECK(near(px_eta(&c, 8), 2.2));  /* 1 + 1.5 * 0.8 */
  c.eta_type = PX_ETA_POLY;
  CHECK(near(px_eta(&c, 3), 1.135)); /* 1 + 1.5 * 0.09 */
  CHECK(near(px_eta(&c, 5), 1.375)); /* 1 + 1.5 * 0.25 */
  c.eta_type = PX_ETA_COS;
  CHECK(px_eta(&c, 0) == 1.0f);
  CHECK(near(px_eta(&c, 5), 1.75)); /* 1 + 1.5 * (1 - cos(pi/2))/2 */
  CHECK(near(px_eta(&c, 10), 2.5)); /* k = K: 1 + 1.5 * (1 - cos(pi))/2 */
  CHECK(near(px_eta(&c, 2), 1.0 + 1.5 * (1.0 - 0.80901699437494742) / 2.0)); /* cos(pi/5) */
  c.eta_type = PX_ETA_PIECEWISE;
  CHECK(px_eta(&c, 4) == 1.0f && px_eta(&c, 5) == 2.5f && px_eta(&c, 8) == 2.5f);
  c.eta_type = PX_ETA_PIECEWISE_65;
  CHECK(px_eta(&c, 6) == 1.0f && px_eta(&c, 7) == 2.5f);
  c.eta_type = PX_ETA_PIECEWISE_70;
  CHECK(px_eta(&c, 6) == 1.0f && px_eta(&c, 7) == 2.5f);
  /* boundaries at N_step = 399 -> K = 400: k/K < 0.65 up to k = 259, 0.7 -> k = 279 */
  c.n_step = 399;
  c.eta_type = PX_ETA_PIECEWISE_65;
  CHECK(px_eta(&c, 259) == 1.0f && px_eta(&c, 260) == 2.5f);
  c.eta_type = PX_ETA_PIECEWISE_70;
  CHECK(px_eta(&c, 279) == 1.0f && px_eta(&c, 280) == 2.5f);
  c.eta_type = PX_ETA_PIECEWISE;
  CHECK(px_eta(&c, 199) == 1.0f && px_eta(&c, 200) == 2.5f);
  c.eta_type = 99;
  CHECK(isnan(px_eta(&c, 0)));
}

static void test_validation(void) {
  px_sampler_config c;
  float t[16];
  px_sampler_config_default(&c);
  c.n_step = 0;
  CHECK(px_noise_schedule(&c, t) == PX_ERR_INPUT);
  c.n_step = -3;
  CHECK(px_noise_schedule(&c, t) == PX_ERR_INPUT);
  c.n_step = 10;
  CHECK(px_noise_schedule(NULL, t) == PX_ERR_INPUT);
  CHECK(px_noise_schedule(&c, NULL) == PX_ERR_INPUT);
  c.s_min = 0.0f;
  CHECK(px_noise_schedule(&c, t) == PX_ERR_INPUT);
  c.s_min = 4e-4f;
  c.rho = -1.0f;
  CHECK(px_noise_schedule(&c, t) == PX_ERR_INPUT);
  c.rho = NAN;
  CHECK(px_noise_schedule(&c, t) == PX_ERR_INPUT);
  c.rho = 7.0f;
  c.sigma_data = INFINITY;
  CHECK(px_noise_schedule(&c, t) == PX_ERR_INPUT);
  c.sigma_data = 16.0f;
  CHECK(px_noise_schedule(&c, t) == PX_OK);
  c.n_step = 1;
  CHECK(px_noise_schedule(&c, t) == PX_OK);
  CHECK(t[0] == 2544.0f && t[1] == 0.0f);
}

/* Properties docs/spec.md states for the default 400-step schedule, and the float32 formula. */
static void test_properties(void) {
  px_sampler_config c;
  px_sampler_config_default(&c);
  float t[401];
  CHECK(px_noise_schedule(&c, t) == PX_OK);
  CHECK(t[0] == 2544.0f);
  CHECK(t[400] == 0.0f);
  int distinct = 1, same = 0;
  for (int i = 1; i <= 400; i++) {
    CHECK(t[i] <= t[i - 1]);
    if (t[i] != t[i - 1])
      distinct++;
    else
      same++;
  }
  CHECK_MSG(distinct == 204, "distinct levels %d", distinct);
  CHECK_MSG(same == 197, "steps with t_cur == t_prev %d", same);
  c.schedule_bf16 = 0;
  CHECK(px_noise_schedule(&c, t) == PX_OK);
  double a = pow(160.0, 1.0 / 7), b = pow(4e-4, 1.0 / 7);
  for (int i = 0; i < 400; i++) {
    double ref = 16.0 * pow(a + i / 400.0 * (b - a), 7.0);
    CHECK_MSG(fabs(t[i] - ref) <= 1e-5 * ref, "i=%d %.9g vs %.9g", i, t[i], ref);
  }
  CHECK(t[400] == 0.0f);
}

static void test_reference(void) {
  const char *dir = getenv("PXDIFF_TEST_DATA");
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir && dir[0] ? dir : "tests/data", REF_FILE);
  FILE *f = fopen(path, "r");
  /* The table ships with the repository: without it the comparison cannot run, which is a
   * failure (run from the repository root, or set PXDIFF_TEST_DATA). */
  CHECK_MSG(f != NULL, "%s not found: the reference comparison cannot run", path);
  if (!f) return;
  static float ref[2][5][401];
  static int seen[2][5][401];
  const int ns[5] = {400, 200, 100, 50, 10};
  char line[512];
  int n_lines = 0;
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#' || line[0] == '\n') continue;
    int n, i;
    char dt[32], hex[64];
    if (sscanf(line, "%d %31s %d %63s", &n, dt, &i, hex) != 4) {
      CHECK_MSG(0, "unparsed line: %s", line);
      continue;
    }
    int k = 0;
    while (k < 5 && ns[k] != n) k++;
    int d = strcmp(dt, "float32") == 0 ? 1 : strcmp(dt, "bfloat16") == 0 ? 0 : -1;
    if (k == 5 || d < 0 || i < 0 || i > n) {
      CHECK_MSG(0, "unexpected line: %s", line);
      continue;
    }
    ref[d][k][i] = (float)strtod(hex, NULL); /* hex float of a float32 value: exact */
    seen[d][k][i] = 1;
    n_lines++;
  }
  fclose(f);
  CHECK_MSG(n_lines == 2 * (401 + 201 + 101 + 51 + 11), "reference lines %d", n_lines);
  for (int d = 0; d < 2; d++) {
    int match = 0, total = 0;
    for (int k = 0; k < 5; k++) {
      px_sampler_config c;
      px_sampler_config_default(&c);
      c.n_step = ns[k];
      c.schedule_bf16 = d == 0;
      float t[401];
      CHECK(px_noise_schedule(&c, t) == PX_OK);
      for (int i = 0; i <= ns[k]; i++) {
        CHECK(seen[d][k][i]);
        total++;
        if (bits(t[i]) == bits(ref[d][k][i]))
          match++;
        else
          CHECK_MSG(0, "%s n_step=%d i=%d: %a, reference %a", d ? "float32" : "bfloat16", ns[k], i,
                    t[i], ref[d][k][i]);
      }
    }
    printf("%s schedule: %d/%d values bit-equal to the reference\n", d ? "float32" : "bfloat16",
           match, total);
  }
}

int main(void) {
  test_defaults();
  test_names();
  test_eta();
  test_validation();
  test_properties();
  test_reference();
  return tu_finish("test_schedule");
}
