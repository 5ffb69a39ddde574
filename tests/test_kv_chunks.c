/* The K / V chunk mappings of the fp16-input attentions (src/cuda/kv_chunks.h), on the host:
 * at every head width the kernels take (d = 32, 48, 64) and both full-attention block sizes
 * (8 and 4 warps), each mapping copies every chunk of the 128-row tile exactly once; the
 * spread mapping puts each phase of 8 lanes in 8 different 16-byte bank groups of the staged
 * rows (row stride d + 8 halves) and gives each pair of lanes one 32-byte sector of one row;
 * and over the local attention's spans (any row count) it copies every chunk once, each
 * phase conflict-free. */
#include "testutil.h"

#include "cuda/kv_chunks.h"

enum { ROWS = 128 }; /* 64 K rows, then 64 V rows */

/* Largest number of a phase's 8 lanes sharing a bank group, over a block's copies. */
static int worst_phase(int d, int warps, int spread) {
  const int ch = d / 8, per_thread = ROWS * ch / (32 * warps), stride = 2 * d + 16;
  int worst = 0;
  for (int w = 0; w < warps; w++)
    for (int i = 0; i < per_thread; i++)
      for (int q = 0; q < 4; q++) {
        int seen[8] = {0};
        for (int e = 0; e < 8; e++) {
          const int lane = 8 * q + e;
          int row, chunk;
          if (spread)
            px_kv_chunk_spread(w, lane, i, warps, &row, &chunk);
          else
            px_kv_chunk_rowmajor(32 * w + lane, i, 32 * warps, ch, &row, &chunk);
          const int g = ((row * stride + 16 * chunk) / 16) % 8;
          if (++seen[g] > worst) worst = seen[g];
        }
      }
  return worst;
}

static void check_mapping(int d, int warps, int spread) {
  const int ch = d / 8, per_thread = ROWS * ch / (32 * warps);
  int count[ROWS][8] = {{0}};
  int bad_range = 0, bad_pair = 0;
  for (int w = 0; w < warps; w++)
    for (int lane = 0; lane < 32; lane++)
      for (int i = 0; i < per_thread; i++) {
        int row, chunk;
        if (spread)
          px_kv_chunk_spread(w, lane, i, warps, &row, &chunk);
        else
          px_kv_chunk_rowmajor(32 * w + lane, i, 32 * warps, ch, &row, &chunk);
        if (row < 0 || row >= ROWS || chunk < 0 || chunk >= ch) {
          bad_range++;
          continue;
        }
        count[row][chunk]++;
        if (spread && (lane & 1)) { /* lanes 2k, 2k+1: chunks 2m, 2m+1 of one row */
          int row0, chunk0;
          px_kv_chunk_spread(w, lane - 1, i, warps, &row0, &chunk0);
          if (row0 != row || chunk0 != chunk - 1 || chunk0 % 2) bad_pair++;
        }
      }
  int missing = 0, twice = 0;
  for (int r = 0; r < ROWS; r++)
    for (int c = 0; c < ch; c++) {
      missing += count[r][c] == 0;
      twice += count[r][c] > 1;
    }
  const char *name = spread ? "spread" : "row-major";
  CHECK_MSG(!bad_range && !missing && !twice, "%s d=%d warps=%d: %d out of range, %d chunks missing, %d twice", name,
            d, warps, bad_range, missing, twice);
  CHECK_MSG(!bad_pair, "%s d=%d warps=%d: %d lane pairs not one sector", name, d, warps, bad_pair);
  const int worst = worst_phase(d, warps, spread);
  if (spread) CHECK_MSG(worst == 1, "spread d=%d warps=%d: %d lanes of a phase share a bank group", d, warps, worst);
  printf("  %-9s d=%d warps=%d: every chunk once, at most %d lanes of a phase per bank group\n", name, d, warps,
         worst);
}

/* The local attention's span of `rows` rows (any count: rows past it are skipped), copied by
 * `warps` warps looping over the units: every chunk once, each phase's active lanes in
 * different bank groups. */
static void check_span(int d, int rows, int warps) {
  const int ch = d / 8, nrow16 = (rows + 15) / 16, units = nrow16 * (ch / 2), stride = 2 * d + 16;
  static int count[1024][8];
  memset(count, 0, sizeof count);
  int worst = 0, bad = 0;
  for (int w = 0; w < warps; w++)
    for (int u = w; u < units; u += warps)
      for (int q = 0; q < 4; q++) {
        int seen[8] = {0};
        for (int e = 0; e < 8; e++) {
          int row, chunk;
          px_kv_chunk_unit(u, nrow16, 8 * q + e, &row, &chunk);
          if (row >= rows) continue;
          if (row < 0 || chunk < 0 || chunk >= ch) {
            bad++;
            continue;
          }
          count[row][chunk]++;
          const int g = ((row * stride + 16 * chunk) / 16) % 8;
          if (++seen[g] > worst) worst = seen[g];
        }
      }
  int wrong = 0;
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < ch; c++) wrong += count[r][c] != 1;
  CHECK_MSG(!bad && !wrong && worst == 1, "span d=%d rows=%d warps=%d: %d out of range, %d chunks not copied once, %d "
            "lanes of a phase in one bank group", d, rows, warps, bad, wrong, worst);
}

int main(void) {
  static const int ds[] = {32, 48, 64}, warps[] = {8, 4};
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < 2; b++)
      for (int spread = 0; spread < 2; spread++) check_mapping(ds[a], warps[b], spread);
  /* spans of the local attention: 32 (tpb - 1) + nk + 16 rows, 2 tpb warps */
  static const int spans[][2] = {{240, 8}, {144, 2}, {176, 4}, {81, 6}, {17, 2}, {1000, 8}};
  for (int a = 0; a < 3; a++)
    for (size_t i = 0; i < sizeof spans / sizeof spans[0]; i++) check_span(ds[a], spans[i][0], spans[i][1]);
  return tu_finish("test_kv_chunks");
}
