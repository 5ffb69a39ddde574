/* Feature bundles (src/io/bundle.h, docs/bundle.md): round trips through the writer,
 * equivalence with direct features in px_denoise, annotation defaults, every validation
 * error with its one-line message, hostile safetensors headers, and fault injection
 * (every truncation, flipped bytes). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/bundle.h"
#include "pxdiff.h"
#include "pxdiff_synthetic.h"
#include "testutil.h"

static char dir[256];

static void pathof(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", dir, name); }

/* A model's widths, as the bundle's checks take them (io/ knows widths, not models). */
static const px_dims *dims_of(const px_model *m) {
  static px_dims D;
  if (px_model_get_dims(m, &D)) memset(&D, 0, sizeof D);
  return &D;
}

/* ------------------------------------------------------------ a small bundle ---- */
enum { T = 5, N = 12, CSI = 6, CS = 4, CZ = 3 };

typedef struct {
  float s_inputs[T * CSI], s_trunk[T * CS], z_trunk[T * T * CZ], ref_pos[N * 3], ref_charge[N];
  uint8_t ref_mask[N];
  int64_t el[N], ch[N * 4], uid[N], a2t[N], asym[T], res[T], ent[T], tok[T], sym[T];
  uint8_t res_name[T * 4], chain[T * 4], atom_name[N * 4], element[N * 2], designed[T];
  int64_t res_num[T];
} canon;

static void canon_fill(canon *c) {
  memset(c, 0, sizeof *c);
  tu_fill_normal(c->s_inputs, T * CSI, 1.0);
  tu_fill_normal(c->s_trunk, T * CS, 1.0);
  tu_fill_normal(c->z_trunk, T * T * CZ, 1.0);
  tu_fill_normal(c->ref_pos, N * 3, 2.0);
  static const int apt[T] = {3, 0, 4, 2, 3}; /* token 1 has no atoms */
  static const char *rn[T] = {"ALA", "GLY", "TRP", "LYS", "SER"};
  static const char *en[4] = {"C", "N", "O", "S"};
  static const int ez[4] = {5, 6, 7, 15};
  for (int t = 0, n = 0; t < T; t++) {
    c->asym[t] = t < 3 ? 0 : 1;
    c->ent[t] = c->asym[t];
    c->res[t] = t < 3 ? t + 1 : t - 2;
    c->tok[t] = t;
    c->res_num[t] = 100 + t;
    c->designed[t] = t >= 3;
    memcpy(c->res_name + t * 4, rn[t], strlen(rn[t]));
    c->chain[t * 4] = t < 3 ? 'P' : 'Q';
    for (int k = 0; k < apt[t]; k++, n++) {
      c->a2t[n] = t;
      c->uid[n] = t;
      c->ref_charge[n] = k == 1 ? 1.0f : 0.0f;
      c->ref_mask[n] = (uint8_t)(n != 5);
      int e = (n + k) % 4;
      c->el[n] = ez[e];
      memcpy(c->element + n * 2, en[e], 1);
      char nm[8];
      snprintf(nm, sizeof nm, "%s%d", en[e], k + 1);
      memcpy(c->atom_name + n * 4, nm, strlen(nm));
      for (int p = 0; p < 4; p++) c->ch[n * 4 + p] = p < (int)strlen(nm) ? nm[p] - 32 : 0;
    }
  }
}

static int64_t sT[1] = {T}, sN[1] = {N}, sN3[2] = {N, 3}, sN4[2] = {N, 4}, sSi[2] = {T, CSI},
               sSt[2] = {T, CS}, sZ[3] = {T, T, CZ}, sT4[2] = {T, 4}, sNa[2] = {N, 4},
               sNe[2] = {N, 2};

static int canon_items(canon *c, px_bundle_item *it) {
  int k = 0;
  it[k++] = (px_bundle_item){"s_inputs", "F32", 2, sSi, c->s_inputs};
  it[k++] = (px_bundle_item){"s_trunk", "F32", 2, sSt, c->s_trunk};
  it[k++] = (px_bundle_item){"z_trunk", "F32", 3, sZ, c->z_trunk};
  it[k++] = (px_bundle_item){"ref_pos", "F32", 2, sN3, c->ref_pos};
  it[k++] = (px_bundle_item){"ref_charge", "F32", 1, sN, c->ref_charge};
  it[k++] = (px_bundle_item){"ref_mask", "U8", 1, sN, c->ref_mask};
  it[k++] = (px_bundle_item){"ref_element_index", "I64", 1, sN, c->el};
  it[k++] = (px_bundle_item){"ref_atom_name_chars_index", "I64", 2, sN4, c->ch};
  it[k++] = (px_bundle_item){"ref_space_uid", "I64", 1, sN, c->uid};
  it[k++] = (px_bundle_item){"atom_to_token_idx", "I64", 1, sN, c->a2t};
  it[k++] = (px_bundle_item){"asym_id", "I64", 1, sT, c->asym};
  it[k++] = (px_bundle_item){"residue_index", "I64", 1, sT, c->res};
  it[k++] = (px_bundle_item){"entity_id", "I64", 1, sT, c->ent};
  it[k++] = (px_bundle_item){"token_index", "I64", 1, sT, c->tok};
  it[k++] = (px_bundle_item){"sym_id", "I64", 1, sT, c->sym};
  it[k++] = (px_bundle_item){"token_res_name", "U8", 2, sT4, c->res_name};
  it[k++] = (px_bundle_item){"token_chain_id", "U8", 2, sT4, c->chain};
  it[k++] = (px_bundle_item){"token_res_num", "I64", 1, sT, c->res_num};
  it[k++] = (px_bundle_item){"token_is_designed", "U8", 1, sT, c->designed};
  it[k++] = (px_bundle_item){"atom_name", "U8", 2, sNa, c->atom_name};
  it[k++] = (px_bundle_item){"atom_element", "U8", 2, sNe, c->element};
  return k;
}

static const char *MK[] = {"format", "version", "name"};
static const char *MV[] = {"pxdiff-bundle", "1", "small \"test\" \xc3\xa9"};

static int write_items(const char *path, px_bundle_item *it, int n) {
  return px_bundle_write_tensors(path, it, n, MK, MV, 3);
}

static int find_item(px_bundle_item *it, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (!strcmp(it[i].name, name)) return i;
  return -1;
}
static int drop_item(px_bundle_item *it, int n, const char *name) {
  int i = find_item(it, n, name);
  if (i < 0) return n;
  it[i] = it[n - 1];
  return n - 1;
}

/* Open must fail with a one-line message starting with the path and containing `want`. */
static void expect_fail(const char *path, const char *want, const char *what) {
  px_bundle *b = (px_bundle *)0x1;
  int rc = px_bundle_open(path, &b);
  const char *m = px_last_error();
  CHECK_MSG(rc != 0, "%s: opened", what);
  CHECK_MSG(b == NULL, "%s: out not cleared", what);
  CHECK_MSG(tu_one_line(m), "%s: message '%s'", what, m);
  CHECK_MSG(strncmp(m, path, strlen(path)) == 0, "%s: message '%s' does not start with the path", what, m);
  CHECK_MSG(!want || strstr(m, want), "%s: message '%s' lacks '%s'", what, m, want);
  if (rc == 0) px_bundle_free(b);
}

static void test_canonical(void) {
  canon c;
  canon_fill(&c);
  px_bundle_item it[32];
  int n = canon_items(&c, it);
  char p[512];
  pathof(p, sizeof p, "canon.bundle");
  CHECK(write_items(p, it, n) == 0);
  px_bundle *b = NULL;
  int rc = px_bundle_open(p, &b);
  CHECK_MSG(rc == 0, "%s", px_last_error());
  if (rc) return;
  const px_features *f = px_bundle_features(b);
  CHECK(f->n_token == T && f->n_atom == N);
  CHECK(!memcmp(f->s_inputs, c.s_inputs, sizeof c.s_inputs));
  CHECK(!memcmp(f->s_trunk, c.s_trunk, sizeof c.s_trunk));
  CHECK(!memcmp(f->z_trunk, c.z_trunk, sizeof c.z_trunk));
  CHECK(!memcmp(f->ref_pos, c.ref_pos, sizeof c.ref_pos));
  CHECK(!memcmp(f->atom_to_token_idx, c.a2t, sizeof c.a2t));
  CHECK(!memcmp(f->residue_index, c.res, sizeof c.res));
  int ok = 1;
  for (int a = 0; a < N; a++) {
    ok &= f->ref_mask[a] == (float)c.ref_mask[a];
    for (int k = 0; k < 128; k++) ok &= f->ref_element[a * 128 + k] == (k == c.el[a] ? 1.0f : 0.0f);
    for (int q = 0; q < 4; q++)
      for (int k = 0; k < 64; k++) ok &= f->ref_atom_name_chars[a * 256 + q * 64 + k] == (k == c.ch[a * 4 + q] ? 1.0f : 0.0f);
  }
  CHECK(ok);
  CHECK(!strcmp(px_bundle_res_name(b, 2), "TRP"));
  CHECK(!strcmp(px_bundle_chain_id(b, 4), "Q"));
  CHECK(px_bundle_res_num(b, 3) == 103);
  CHECK(px_bundle_is_designed(b, 3) == 1 && px_bundle_is_designed(b, 0) == 0);
  CHECK(!strcmp(px_bundle_atom_name(b, 0), "C1"));
  CHECK(!strcmp(px_bundle_atom_element(b, 1), "O"));
  CHECK(!strcmp(px_bundle_res_name(b, 99), "") && px_bundle_res_num(b, -1) == 0);
  CHECK(px_bundle_annotations_present(b) == 63);
  const char *name = px_bundle_meta(b, "name");
  CHECK(name && !strcmp(name, MV[2]));
  CHECK(px_bundle_meta(b, "nope") == NULL);
  int a, s, z;
  px_bundle_widths(b, &a, &s, &z);
  CHECK(a == CSI && s == CS && z == CZ);
  /* summary */
  char sp[512];
  pathof(sp, sizeof sp, "summary.txt");
  FILE *o = fopen(sp, "w");
  px_bundle_summary(b, o);
  fclose(o);
  size_t sl;
  char *sum = (char *)tu_slurp(sp, &sl);
  CHECK(sum && strstr(sum, "tokens: 5 (2 designed, 3 condition)"));
  CHECK(sum && strstr(sum, "atoms: 12"));
  CHECK(sum && strstr(sum, "1 tokens without atoms"));
  CHECK(sum && strstr(sum, "chains: 2"));
  CHECK(sum && strstr(sum, "c_s_inputs 6"));
  free(sum);
  px_bundle_free(b);
}

/* Alternative encodings give the same features: dense one-hots ([N,128]; [N,4,64]),
 * I32/I8 indices, BF16 s_inputs, F32 ref_mask, BOOL flags. */
static void test_encodings(void) {
  canon c;
  canon_fill(&c);
  for (int i = 0; i < T * CSI; i++) { /* values exact in bfloat16 */
    uint32_t bits;
    memcpy(&bits, &c.s_inputs[i], 4);
    bits &= 0xffff0000u;
    memcpy(&c.s_inputs[i], &bits, 4);
  }
  px_bundle_item it[32];
  int n = canon_items(&c, it);
  char p0[512], p1[512];
  pathof(p0, sizeof p0, "enc0.bundle");
  pathof(p1, sizeof p1, "enc1.bundle");
  CHECK(write_items(p0, it, n) == 0);
  float *el = calloc(N * 128, 4), *ch = calloc(N * 256, 4), mask[N];
  int32_t el32[N];
  int8_t ch8[N * 4];
  uint16_t bf[T * CSI];
  for (int a = 0; a < N; a++) {
    el[a * 128 + c.el[a]] = 1;
    el32[a] = (int32_t)c.el[a];
    mask[a] = c.ref_mask[a];
    for (int q = 0; q < 4; q++) {
      ch[a * 256 + q * 64 + c.ch[a * 4 + q]] = 1;
      ch8[a * 4 + q] = (int8_t)c.ch[a * 4 + q];
    }
  }
  for (int i = 0; i < T * CSI; i++) {
    uint32_t bits;
    memcpy(&bits, &c.s_inputs[i], 4);
    bf[i] = (uint16_t)(bits >> 16);
  }
  static int64_t sE[2] = {N, 128}, sC[3] = {N, 4, 64};
  for (int variant = 0; variant < 2; variant++) {
    px_bundle_item v[32];
    memcpy(v, it, sizeof it);
    int m = n;
    m = drop_item(v, m, "ref_element_index");
    m = drop_item(v, m, "ref_atom_name_chars_index");
    if (variant == 0) {
      v[m++] = (px_bundle_item){"ref_element", "F32", 2, sE, el};
      v[m++] = (px_bundle_item){"ref_atom_name_chars", "F32", 3, sC, ch};
      v[find_item(v, m, "s_inputs")] = (px_bundle_item){"s_inputs", "BF16", 2, sSi, bf};
      v[find_item(v, m, "ref_mask")] = (px_bundle_item){"ref_mask", "F32", 1, sN, mask};
    } else {
      v[m++] = (px_bundle_item){"ref_element_index", "I32", 1, sN, el32};
      v[m++] = (px_bundle_item){"ref_atom_name_chars_index", "I8", 2, sN4, ch8};
      v[find_item(v, m, "token_is_designed")].dtype = "BOOL";
    }
    CHECK(write_items(p1, v, m) == 0);
    px_bundle *b0 = NULL, *b1 = NULL;
    CHECK_MSG(px_bundle_open(p0, &b0) == 0, "%s", px_last_error());
    CHECK_MSG(px_bundle_open(p1, &b1) == 0, "variant %d: %s", variant, px_last_error());
    if (b0 && b1) {
      const px_features *f0 = px_bundle_features(b0), *f1 = px_bundle_features(b1);
      CHECK(!memcmp(f0->ref_element, f1->ref_element, N * 128 * 4));
      CHECK(!memcmp(f0->ref_atom_name_chars, f1->ref_atom_name_chars, N * 256 * 4));
      CHECK(!memcmp(f0->s_inputs, f1->s_inputs, T * CSI * 4));
      CHECK(!memcmp(f0->ref_mask, f1->ref_mask, N * 4));
      CHECK(px_bundle_is_designed(b1, 4) == 1);
    }
    px_bundle_free(b0);
    px_bundle_free(b1);
  }
  free(el);
  free(ch);
}

/* Without s_trunk and annotations: defaults. */
static void test_defaults(void) {
  canon c;
  canon_fill(&c);
  for (int a = 0; a < N; a++)
    if (a % 3 == 0)
      for (int q = 0; q < 4; q++) c.ch[a * 4 + q] = q == 1 ? 33 : 0; /* " A": leading space */
  px_bundle_item it[32];
  int n = canon_items(&c, it);
  const char *drop[] = {"s_trunk", "token_res_name", "token_chain_id", "token_res_num",
                        "token_is_designed", "atom_name", "atom_element"};
  for (int i = 0; i < 7; i++) n = drop_item(it, n, drop[i]);
  char p[512];
  pathof(p, sizeof p, "defaults.bundle");
  CHECK(write_items(p, it, n) == 0);
  px_bundle *b = NULL;
  CHECK_MSG(px_bundle_open(p, &b) == 0, "%s", px_last_error());
  if (!b) return;
  CHECK(px_bundle_features(b)->s_trunk == NULL);
  CHECK(px_bundle_annotations_present(b) == 0);
  CHECK(!strcmp(px_bundle_res_name(b, 0), "UNK"));
  CHECK(!strcmp(px_bundle_chain_id(b, 0), "A") && !strcmp(px_bundle_chain_id(b, 4), "B"));
  CHECK(px_bundle_res_num(b, 4) == c.res[4]);
  CHECK(px_bundle_is_designed(b, 4) == 0);
  CHECK(!strcmp(px_bundle_atom_element(b, 0), "C")); /* index 5 -> carbon */
  char want[16];
  snprintf(want, sizeof want, "%s1", px_bundle_atom_element(b, 0)); /* " A" is unusable */
  CHECK_MSG(!strcmp(px_bundle_atom_name(b, 0), want), "got '%s'", px_bundle_atom_name(b, 0));
  CHECK_MSG(!strcmp(px_bundle_atom_name(b, 1), "O2"), "got '%s'", px_bundle_atom_name(b, 1));
  px_bundle_free(b);
}

/* Many chains: labels A..Z a..z 0..9 AA AB ..., by first appearance. */
static void test_chain_labels(void) {
  enum { TT = 70 };
  static int64_t asym[TT], res[TT], tok[TT], zero[TT], a2t[TT], uid[TT], el[TT], ch[TT * 4];
  static float si[TT], z[TT * TT], pos[TT * 3], chg[TT];
  static uint8_t mask[TT];
  for (int t = 0; t < TT; t++) {
    asym[t] = 1000 - t; /* descending values: labels follow appearance, not value */
    res[t] = 1;
    tok[t] = t;
    a2t[t] = t;
    uid[t] = t;
    el[t] = 5;
    mask[t] = 1;
  }
  static int64_t s1[1] = {TT}, s2[2] = {TT, 1}, s3[3] = {TT, TT, 1}, sp[2] = {TT, 3}, sc[2] = {TT, 4};
  px_bundle_item it[] = {
      {"s_inputs", "F32", 2, s2, si},         {"z_trunk", "F32", 3, s3, z},
      {"ref_pos", "F32", 2, sp, pos},         {"ref_charge", "F32", 1, s1, chg},
      {"ref_mask", "U8", 1, s1, mask},        {"ref_element_index", "I64", 1, s1, el},
      {"ref_atom_name_chars_index", "I64", 2, sc, ch}, {"ref_space_uid", "I64", 1, s1, uid},
      {"atom_to_token_idx", "I64", 1, s1, a2t}, {"asym_id", "I64", 1, s1, asym},
      {"residue_index", "I64", 1, s1, res},   {"entity_id", "I64", 1, s1, zero},
      {"token_index", "I64", 1, s1, tok},     {"sym_id", "I64", 1, s1, zero}};
  char p[512];
  pathof(p, sizeof p, "chains.bundle");
  CHECK(write_items(p, it, (int)(sizeof it / sizeof it[0])) == 0);
  px_bundle *b = NULL;
  CHECK_MSG(px_bundle_open(p, &b) == 0, "%s", px_last_error());
  if (!b) return;
  CHECK(!strcmp(px_bundle_chain_id(b, 0), "A"));
  CHECK(!strcmp(px_bundle_chain_id(b, 26), "a"));
  CHECK(!strcmp(px_bundle_chain_id(b, 52), "0"));
  CHECK(!strcmp(px_bundle_chain_id(b, 61), "9"));
  CHECK(!strcmp(px_bundle_chain_id(b, 62), "AA"));
  CHECK(!strcmp(px_bundle_chain_id(b, 63), "AB"));
  px_bundle_free(b);
}

/* Every validation error: one line, the path first, naming the problem. */
static void test_errors(void) {
  char p[512];
  pathof(p, sizeof p, "bad.bundle");
  struct {
    const char *what, *want;
  } cases[] = {
      {"no format", "not a pxdiff bundle"},
      {"version 2", "version 2 is not supported"},
      {"missing s_inputs", "missing tensor 's_inputs'"},
      {"missing ref_element", "ref_element_index"},
      {"both element forms", "both ref_element and ref_element_index"},
      {"z_trunk shape", "'z_trunk' has shape [5, 4, 3]"},
      {"s_inputs tokens", "'s_inputs' has shape [4, 6]"},
      {"ref_pos atoms", "'ref_pos' has shape [11, 3]"},
      {"s_inputs dtype", "'s_inputs' has dtype I64"},
      {"a2t range", "atom_to_token_idx[11] = 5 is out of range [0, 4]"},
      {"a2t negative", "atom_to_token_idx[0] = -1 is out of range"},
      {"a2t order", "not ascending at atom 4"},
      {"nan", "'s_inputs' holds NaN at element 7"},
      {"inf", "'z_trunk' holds Inf"},
      {"nan ref_pos", "'ref_pos' holds NaN"},
      {"zero tokens", "0 tokens"},
      {"zero atoms", "0 atoms"},
      {"element index", "ref_element_index[3] = 128 is out of range [-1, 127]"},
      {"chars index", "ref_atom_name_chars_index[2] = 64 is out of range [-1, 63]"},
      {"dense not one-hot", "ref_element row 2 is not one-hot (value 0.5"},
      {"dense two ones", "ref_element row 0 is not one-hot (2 ones"},
      {"mask value", "ref_mask[3] = 2; expected 0 or 1"},
      {"designed value", "token_is_designed[1] = 7; expected 0 or 1"},
      {"res name space", "token_res_name[1] is not printable ASCII"},
      {"res name empty", "token_chain_id[0] is empty"},
      {"atom name wide", "'atom_name' has shape [12, 17]"},
      {"res num shape", "'token_res_num' has shape [4]"},
      {"huge residue index", "residue_index[0] = 4611686018427387904 is out of range"},
      {"string dtype", "'atom_element' has dtype I8; expected U8"},
  };
  int nc = (int)(sizeof cases / sizeof cases[0]);
  for (int ci = 0; ci < nc; ci++) {
    canon c;
    canon_fill(&c);
    px_bundle_item it[32];
    int n = canon_items(&c, it);
    const char *w = cases[ci].what;
    const char *mv[3] = {MV[0], MV[1], MV[2]};
    int nmeta = 3;
    static int64_t s54[3] = {T, T - 1, CZ}, s46[2] = {T - 1, CSI}, s113[2] = {N - 1, 3},
                   sE[2] = {N, 128}, s0[1] = {0}, s4[1] = {T - 1}, sW[2] = {N, 17};
    static float dense[N * 128];
    static uint8_t wide[N * 17];
    memset(dense, 0, sizeof dense);
    for (int a = 0; a < N; a++) dense[a * 128 + c.el[a]] = 1;
    if (!strcmp(w, "no format")) nmeta = 0;
    else if (!strcmp(w, "version 2")) mv[1] = "2";
    else if (!strcmp(w, "missing s_inputs")) n = drop_item(it, n, "s_inputs");
    else if (!strcmp(w, "missing ref_element")) n = drop_item(it, n, "ref_element_index");
    else if (!strcmp(w, "both element forms")) it[n++] = (px_bundle_item){"ref_element", "F32", 2, sE, dense};
    else if (!strcmp(w, "z_trunk shape")) it[find_item(it, n, "z_trunk")].shape = s54;
    else if (!strcmp(w, "s_inputs tokens")) it[find_item(it, n, "s_inputs")].shape = s46;
    else if (!strcmp(w, "ref_pos atoms")) it[find_item(it, n, "ref_pos")].shape = s113;
    else if (!strcmp(w, "s_inputs dtype")) {
      it[find_item(it, n, "s_inputs")].dtype = "I64";
      static int64_t s56[2] = {T, CSI};
      static int64_t ibuf[T * CSI];
      it[find_item(it, n, "s_inputs")].shape = s56;
      it[find_item(it, n, "s_inputs")].data = ibuf;
    } else if (!strcmp(w, "a2t range")) c.a2t[N - 1] = T;
    else if (!strcmp(w, "a2t negative")) c.a2t[0] = -1;
    else if (!strcmp(w, "a2t order")) c.a2t[4] = 0;
    else if (!strcmp(w, "nan")) c.s_inputs[7] = NAN;
    else if (!strcmp(w, "inf")) c.z_trunk[10] = -INFINITY;
    else if (!strcmp(w, "nan ref_pos")) c.ref_pos[0] = NAN;
    else if (!strcmp(w, "zero tokens")) it[find_item(it, n, "asym_id")].shape = s0;
    else if (!strcmp(w, "zero atoms")) it[find_item(it, n, "atom_to_token_idx")].shape = s0;
    else if (!strcmp(w, "element index")) c.el[3] = 128;
    else if (!strcmp(w, "chars index")) c.ch[2] = 64;
    else if (!strcmp(w, "dense not one-hot") || !strcmp(w, "dense two ones")) {
      n = drop_item(it, n, "ref_element_index");
      if (w[6] == 'n') dense[2 * 128 + 7] = 0.5f;
      else dense[0 * 128 + 100] = 1.0f;
      it[n++] = (px_bundle_item){"ref_element", "F32", 2, sE, dense};
    } else if (!strcmp(w, "mask value")) c.ref_mask[3] = 2;
    else if (!strcmp(w, "designed value")) c.designed[1] = 7;
    else if (!strcmp(w, "res name space")) c.res_name[4 + 1] = ' ';
    else if (!strcmp(w, "res name empty")) memset(c.chain, 0, 4);
    else if (!strcmp(w, "atom name wide")) {
      int i = find_item(it, n, "atom_name");
      memset(wide, 'X', sizeof wide);
      it[i].shape = sW;
      it[i].data = wide;
    } else if (!strcmp(w, "res num shape")) it[find_item(it, n, "token_res_num")].shape = s4;
    else if (!strcmp(w, "huge residue index")) c.res[0] = (int64_t)1 << 62;
    else if (!strcmp(w, "string dtype")) it[find_item(it, n, "atom_element")].dtype = "I8";
    int rc = px_bundle_write_tensors(p, it, n, MK, mv, nmeta);
    CHECK_MSG(rc == 0, "%s: write: %s", w, px_last_error());
    expect_fail(p, cases[ci].want, w);
  }
}

/* Raw files: foreign, empty, hostile safetensors headers. */
static void put_header(const char *path, const char *json, const void *data, size_t dn) {
  size_t hl = strlen(json);
  unsigned char *buf = malloc(8 + hl + dn + 1);
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
  memcpy(buf + 8, json, hl);
  if (dn) memcpy(buf + 8 + hl, data, dn);
  tu_spit(path, buf, 8 + hl + dn);
  free(buf);
}

static void test_hostile(void) {
  char p[512];
  pathof(p, sizeof p, "hostile.bundle");
  tu_spit(p, "", 0);
  expect_fail(p, NULL, "empty file");
  tu_spit(p, "hello, this is a text file and not a bundle\n", 44);
  expect_fail(p, "not a PyTorch checkpoint or safetensors", "text file");
  tu_spit(p, "PK\x03\x04 not really a zip archive, truncated", 40);
  expect_fail(p, NULL, "zip magic");
  {
    unsigned char b[64] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    tu_spit(p, b, sizeof b);
    expect_fail(p, "header length", "absurd header length");
  }
  static const char meta[] = "\"__metadata__\":{\"format\":\"pxdiff-bundle\",\"version\":\"1\"}";
  char js[1024];
  uint8_t data[64] = {0};
  snprintf(js, sizeof js,
           "{%s,\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", meta);
  put_header(p, js, data, 24);
  expect_fail(p, "overlap", "overlapping offsets");
  snprintf(js, sizeof js, "{%s,\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,160]}}", meta);
  put_header(p, js, data, 16);
  expect_fail(p, "data_offsets", "out-of-range offsets");
  snprintf(js, sizeof js, "{%s,\"a\":{\"dtype\":\"F32\",\"shape\":[1000000000,1000000000,1000],\"data_offsets\":[0,16]}}", meta);
  put_header(p, js, data, 16);
  expect_fail(p, NULL, "absurd shape");
  snprintf(js, sizeof js, "{\"__metadata__\":{\"format\":\"pxdiff-bundle\",\"version\":1}}");
  put_header(p, js, NULL, 0);
  expect_fail(p, "not a string", "metadata number");
  snprintf(js, sizeof js, "{\"__metadata__\":[\"format\"]}");
  put_header(p, js, NULL, 0);
  expect_fail(p, "__metadata__ is not an object", "metadata array");
  snprintf(js, sizeof js, "{%s}", meta);
  put_header(p, js, NULL, 0);
  expect_fail(p, "missing tensor 'asym_id'", "no tensors");
  snprintf(js, sizeof js, "{\"__metadata__\":{\"format\":\"pxdiff-bundle\",\"version\":\"\\u0001\\n\"}}");
  put_header(p, js, NULL, 0);
  expect_fail(p, "version ??", "control characters in metadata are not echoed");
  pathof(p, sizeof p, "does-not-exist.bundle");
  expect_fail(p, "cannot open", "missing file");
  expect_fail(dir, NULL, "a directory");
}

/* Every truncation fails cleanly; flipped bytes never crash and, if accepted, give
 * features that satisfy the invariants. */
static void test_fault_injection(void) {
  char good[512], p[512];
  pathof(good, sizeof good, "canon.bundle");
  pathof(p, sizeof p, "fault.bundle");
  size_t n;
  unsigned char *b = tu_slurp(good, &n);
  CHECK(b != NULL);
  if (!b) return;
  int bad_msgs = 0, opened = 0;
  for (size_t cut = 0; cut < n; cut += (cut < 600 ? 1 : 7)) {
    tu_spit(p, b, cut);
    px_bundle *x = NULL;
    if (px_bundle_open(p, &x) == 0) {
      opened++;
      px_bundle_free(x);
    } else if (!tu_one_line(px_last_error())) {
      bad_msgs++;
    }
  }
  CHECK_MSG(opened == 0, "%d truncations opened", opened);
  CHECK(bad_msgs == 0);
  unsigned char *m = malloc(n);
  int accepted = 0;
  for (int trial = 0; trial < 600; trial++) {
    memcpy(m, b, n);
    int flips = 1 + (int)(tu_u64() % 3);
    for (int k = 0; k < flips; k++) {
      size_t at = (size_t)(tu_u64() % n);
      if (trial % 2) at = at % (n < 700 ? n : 700); /* half in or near the header */
      m[at] ^= (unsigned char)(1u << (tu_u64() % 8));
    }
    tu_spit(p, m, n);
    px_bundle *x = NULL;
    if (px_bundle_open(p, &x) == 0) {
      accepted++;
      const px_features *f = px_bundle_features(x);
      int ok = f->n_token > 0 && f->n_atom > 0;
      for (int a = 0; a < f->n_atom; a++) {
        ok &= f->atom_to_token_idx[a] >= 0 && f->atom_to_token_idx[a] < f->n_token;
        if (a) ok &= f->atom_to_token_idx[a] >= f->atom_to_token_idx[a - 1];
        ok &= isfinite(f->ref_pos[a * 3]) && isfinite(f->ref_charge[a]);
      }
      for (int t = 0; t < f->n_token; t++) ok &= strlen(px_bundle_chain_id(x, t)) > 0;
      CHECK(ok);
      FILE *o = fopen("/dev/null", "w");
      px_bundle_summary(x, o);
      fclose(o);
      px_bundle_free(x);
    } else if (!tu_one_line(px_last_error())) {
      bad_msgs++;
    }
  }
  CHECK(bad_msgs == 0);
  printf("fault injection: %zu-byte bundle, 600 flipped variants, %d accepted\n", n, accepted);
  free(m);
  free(b);
}

/* px_bundle_write round trip with a synthetic model: the bundle's features give the same
 * px_denoise output as the features passed directly; width checks against the model. */
static void test_model(void) {
  px_dims D;
  px_dims_released(&D);
  D.c_s = 32;
  D.c_z = 16;
  D.c_s_inputs = 24;
  D.c_token = 64;
  D.c_atom = 32;
  D.c_atompair = 8;
  D.n_fourier = 16;
  D.n_token_blocks = 1;
  D.n_token_heads = 4;
  D.n_enc_blocks = D.n_dec_blocks = 1;
  D.n_enc_heads = D.n_dec_heads = 4;
  px_model *m = NULL;
  int rc = px_model_synthetic(&D, 5, &m);
  CHECK_MSG(rc == 0, "%s", px_last_error());
  if (rc) return;
  px_synthetic_design sd;
  rc = px_synthetic_design_make(&D, 9, 6, 70, 11, &sd);
  CHECK_MSG(rc == 0, "%s", px_last_error());
  if (rc) {
    px_model_free(m);
    return;
  }
  const int TT = sd.f.n_token, NN = sd.f.n_atom;
  char **rn = malloc(sizeof(char *) * TT), **cid = malloc(sizeof(char *) * TT);
  char **an = malloc(sizeof(char *) * NN), **ele = malloc(sizeof(char *) * NN);
  int64_t *num = malloc(sizeof(int64_t) * TT);
  for (int t = 0; t < TT; t++) {
    rn[t] = sd.is_binder[t] ? "GLY" : "ALA";
    cid[t] = sd.is_binder[t] ? "B" : "A";
    num[t] = sd.f.residue_index[t] + 10;
  }
  for (int a = 0; a < NN; a++) {
    an[a] = a % 2 ? "CA" : "N";
    ele[a] = a % 2 ? "C" : "N";
  }
  px_bundle_annotations ann = {(const char *const *)rn, (const char *const *)cid, num,
                               sd.is_binder, (const char *const *)an, (const char *const *)ele};
  char p[512];
  pathof(p, sizeof p, "model.bundle");
  rc = px_bundle_write(p, &sd.f, D.c_s_inputs, D.c_s, D.c_z, &ann, "synthetic");
  CHECK_MSG(rc == 0, "%s", px_last_error());
  px_bundle *b = NULL;
  rc = px_bundle_open(p, &b);
  CHECK_MSG(rc == 0, "%s", px_last_error());
  if (b) {
    const px_features *bf = NULL;
    CHECK(px_bundle_check_dims(b, dims_of(m)) == 0);
    CHECK(px_bundle_features_for_dims(b, dims_of(m), &bf) == 0 && bf);
    CHECK(!strcmp(px_bundle_chain_id(b, TT - 1), "B") && px_bundle_is_designed(b, TT - 1));
    CHECK(px_bundle_res_num(b, 0) == sd.f.residue_index[0] + 10);
    CHECK(!strcmp(px_bundle_atom_name(b, 1), "CA"));
    CHECK(!memcmp(bf->z_trunk, sd.f.z_trunk, sizeof(float) * TT * TT * D.c_z));
    CHECK(!memcmp(bf->ref_element, sd.f.ref_element, sizeof(float) * NN * 128));
    CHECK(!memcmp(bf->ref_atom_name_chars, sd.f.ref_atom_name_chars, sizeof(float) * NN * 256));
    CHECK(px_features_hash(m, bf) == px_features_hash(m, &sd.f));
    px_design *d0 = NULL, *d1 = NULL;
    CHECK(px_design_create(m, &sd.f, &d0) == 0);
    CHECK(px_design_create(m, bf, &d1) == 0);
    float *x = malloc(sizeof(float) * 2 * NN * 3), *y0 = malloc(sizeof(float) * 2 * NN * 3),
          *y1 = malloc(sizeof(float) * 2 * NN * 3), t[2] = {3.5f, 40.0f};
    tu_fill_normal(x, (size_t)2 * NN * 3, 10.0);
    if (d0 && d1) {
      CHECK(px_denoise(m, d0, 2, x, t, y0) == 0);
      CHECK(px_denoise(m, d1, 2, x, t, y1) == 0);
      CHECK(!memcmp(y0, y1, sizeof(float) * 2 * NN * 3));
    }
    free(x);
    free(y0);
    free(y1);
    px_design_free(d0);
    px_design_free(d1);
    px_bundle_free(b);
  }
  /* without s_trunk: zeros of the model's c_s */
  const float *keep = sd.f.s_trunk;
  sd.f.s_trunk = NULL;
  rc = px_bundle_write(p, &sd.f, D.c_s_inputs, 0, D.c_z, NULL, NULL);
  sd.f.s_trunk = keep;
  CHECK_MSG(rc == 0, "%s", px_last_error());
  b = NULL;
  if (px_bundle_open(p, &b) == 0) {
    const px_features *bf = NULL;
    CHECK(px_bundle_features(b)->s_trunk == NULL);
    CHECK(px_bundle_features_for_dims(b, dims_of(m), &bf) == 0 && bf && bf->s_trunk);
    int zero = 1;
    for (int i = 0; bf && i < TT * D.c_s; i++) zero &= bf->s_trunk[i] == 0.0f;
    CHECK(zero);
    px_bundle_free(b);
  }
  /* width mismatch against the model */
  px_dims D2 = D;
  D2.c_z = 8;
  px_model *m2 = NULL;
  if (px_model_synthetic(&D2, 5, &m2) == 0) {
    rc = px_bundle_write(p, &sd.f, D.c_s_inputs, D.c_s, D.c_z, NULL, NULL);
    b = NULL;
    if (rc == 0 && px_bundle_open(p, &b) == 0) {
      const px_features *bf = (const px_features *)0x1;
      CHECK(px_bundle_check_dims(b, dims_of(m2)) != 0);
      CHECK_MSG(strstr(px_last_error(), "z_trunk has width 16 but the model expects c_z = 8") &&
                    tu_one_line(px_last_error()), "%s", px_last_error());
      CHECK(px_bundle_features_for_dims(b, dims_of(m2), &bf) != 0 && bf == NULL);
      px_bundle_free(b);
    }
    px_model_free(m2);
  }
  /* the writer refuses invalid features and leaves nothing behind */
  char p2[512];
  pathof(p2, sizeof p2, "refused.bundle");
  int64_t *a2t = (int64_t *)sd.f.atom_to_token_idx;
  int64_t save = a2t[3];
  a2t[3] = TT + 4;
  rc = px_bundle_write(p2, &sd.f, D.c_s_inputs, D.c_s, D.c_z, NULL, NULL);
  a2t[3] = save;
  CHECK(rc != 0 && strstr(px_last_error(), "refusing to write an invalid bundle") &&
        strstr(px_last_error(), "atom_to_token_idx[3]") && !strstr(px_last_error(), ".partial"));
  CHECK(access(p2, F_OK) != 0);
  char p3[600];
  snprintf(p3, sizeof p3, "%s.partial", p2);
  CHECK(access(p3, F_OK) != 0);
  ((float *)sd.f.ref_element)[7] = 0.25f;
  rc = px_bundle_write(p2, &sd.f, D.c_s_inputs, D.c_s, D.c_z, NULL, NULL);
  CHECK(rc != 0 && strstr(px_last_error(), "ref_element row 0 is not one-hot"));
  CHECK(access(p2, F_OK) != 0);
  free(rn);
  free(cid);
  free(an);
  free(ele);
  free(num);
  px_synthetic_free(&sd);
  px_model_free(m);
}

static void cleanup(void) {
  const char *names[] = {"canon.bundle", "enc0.bundle", "enc1.bundle", "defaults.bundle",
                         "chains.bundle", "bad.bundle", "hostile.bundle", "fault.bundle",
                         "model.bundle", "summary.txt"};
  char p[512];
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    pathof(p, sizeof p, names[i]);
    remove(p);
  }
  rmdir(dir);
}

int main(void) {
  tu_seed();
  snprintf(dir, sizeof dir, "/tmp/pxdiff_test_bundle_%ld", (long)getpid());
  if (mkdir(dir, 0700) != 0) return 1;
  test_canonical();
  test_encodings();
  test_defaults();
  test_chain_labels();
  test_errors();
  test_hostile();
  test_fault_injection();
  test_model();
  cleanup();
  return tu_finish("test_bundle");
}
