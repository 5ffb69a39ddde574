/* The target structure readers' common part (io/structure_in_priv.h): the steps both readers
 * (cif_read.c, pdb_read.c) take after reading their atoms (MSE -> MET, ARG NH1/NH2, water and
 * hydrogens dropped, chains built) and the result's free. The readers call this file and not
 * each other; structure_read.c, above them, chooses the reader. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "io/strbuf.h"
#include "io/structure_in_priv.h"
#include "platform.h"

/* ------------------------------------------------------------ string keys -- */

static int map_init(sin_map *m, size_t max_items) {
  m->cap = 16;
  while (m->cap < max_items * 2 + 2) m->cap <<= 1;
  m->slot = calloc(m->cap, sizeof(int));
  m->key = NULL;
  return m->slot ? 0 : -1;
}

/* Index of name, or -1. keys is the array the stored values index. */
static int map_find(const sin_map *m, const char (*keys)[PX_SIN_NAME], const char *name) {
  size_t i = (size_t)sin_name_hash(name) & (m->cap - 1);
  while (m->slot[i]) {
    int v = m->slot[i] - 1;
    if (!strcmp(keys[v], name)) return v;
    i = (i + 1) & (m->cap - 1);
  }
  return -1;
}

/* Record value v for keys[v] (not present yet; the caller sized the map). */
static void map_put(sin_map *m, const char (*keys)[PX_SIN_NAME], int v) {
  size_t i = (size_t)sin_name_hash(keys[v]) & (m->cap - 1);
  while (m->slot[i]) i = (i + 1) & (m->cap - 1);
  m->slot[i] = v + 1;
}

/* ------------------------------------------------------------- shared bits -- */

int sin_copy_name(char dst[PX_SIN_NAME], const char *v, size_t len) {
  if (len > PX_SIN_NAME - 1) return -1;
  memcpy(dst, v, len);
  dst[len] = 0;
  return 0;
}

void sin_entities_free(px_sin_entity *e, int n) {
  if (!e) return;
  for (int i = 0; i < n; i++) free(e[i].seq);
  free(e);
}

void px_structure_in_free(px_structure_in *s) {
  if (!s) return;
  free(s->atom);
  free(s->chain);
  sin_entities_free(s->entity, s->n_entity);
  free(s->conn);
  free(s->pdb_res);
  free(s);
}

void sin_mse_to_met(sin_raw *a, int n) {
  for (int i = 0; i < n; i++) {
    if (strcmp(a[i].res, "MSE")) continue;
    if (!strcmp(a[i].atom, "SE")) {
      strcpy(a[i].atom, "SD");
      strcpy(a[i].elem, "S");
    }
    strcpy(a[i].res, "MET");
  }
}

static int same_residue(const sin_raw *a, const sin_raw *b) {
  return !strcmp(a->asym, b->asym) && a->seq == b->seq && a->ins == b->ins &&
         !strcmp(a->res, b->res);
}

/* Protenix's fix_arginine: NH1 must be the nitrogen nearer CD. The squared distances are
 * float32 sums in numpy's order. Upstream tests the three indices for truth, so an
 * arginine whose CD (or NH1, NH2) is atom 0 of the model is left alone; so is it here. */
static void fix_arginine(sin_raw *a, int n) {
  for (int s = 0, e; s < n; s = e) {
    for (e = s + 1; e < n && same_residue(&a[s], &a[e]); e++) {
    }
    if (strcmp(a[s].res, "ARG")) continue;
    int cd = -1, nh1 = -1, nh2 = -1;
    for (int i = s; i < e; i++) {
      if (!strcmp(a[i].atom, "CD")) cd = i;
      if (!strcmp(a[i].atom, "NH1")) nh1 = i;
      if (!strcmp(a[i].atom, "NH2")) nh2 = i;
    }
    if (cd <= 0 || nh1 <= 0 || nh2 <= 0) continue;
    float d1 = 0, d2 = 0;
    for (int k = 0; k < 3; k++) {
      float u = a[nh1].xyz[k] - a[cd].xyz[k], v = a[nh2].xyz[k] - a[cd].xyz[k];
      float uu = u * u, vv = v * v;
      d1 = k ? d1 + uu : uu;
      d2 = k ? d2 + vv : vv;
    }
    if (d2 < d1) {
      float t[3];
      memcpy(t, a[nh1].xyz, sizeof t);
      memcpy(a[nh1].xyz, a[nh2].xyz, sizeof t);
      memcpy(a[nh2].xyz, t, sizeof t);
    }
  }
}

static int dropped(const sin_raw *a) {
  return !strcmp(a->res, "HOH") || !strcmp(a->res, "DOD") || !strcmp(a->elem, "H") ||
         !strcmp(a->elem, "D");
}

int sin_finish(const char *name, sin_raw *a, int n, px_sin_entity *ent, int n_ent,
               px_sin_conn *conn, int n_conn, px_sin_pdb_res *pdb_res, int n_pdb_res,
               int from_pdb, px_structure_in **out) {
  char shown[96];
  px_shown_name(shown, sizeof shown, name);
  *out = NULL;
  px_structure_in *s = calloc(1, sizeof *s);
  sin_map cm = {0};
  int rc = PX_OK;
  if (!s) {
    rc = px_fail(PX_ERR_NOMEM, "%s: out of memory", shown);
    goto fail;
  }
  s->entity = ent;
  s->n_entity = n_ent;
  s->conn = conn;
  s->n_conn = n_conn;
  s->pdb_res = pdb_res;
  s->n_pdb_res = n_pdb_res;
  s->pdb_dup[0] = s->pdb_dup[1] = -1;
  s->from_pdb = from_pdb;
  ent = NULL;
  conn = NULL;
  pdb_res = NULL;

  fix_arginine(a, n);
  int kept = 0;
  for (int i = 0; i < n; i++) kept += !dropped(&a[i]);
  if (kept == 0)
    return px_structure_in_free(s),
           px_fail(PX_ERR_FORMAT, "%s: no atoms left once water and hydrogens are removed", shown);
  s->atom = malloc(sizeof *s->atom * (size_t)kept);
  s->chain = malloc(sizeof *s->chain * (size_t)kept);
  char(*cid)[PX_SIN_NAME] = malloc(sizeof *cid * (size_t)kept);
  if (!s->atom || !s->chain || !cid || map_init(&cm, (size_t)kept)) {
    free(cid);
    rc = px_fail(PX_ERR_NOMEM, "%s: out of memory", shown);
    goto fail;
  }
  for (int i = 0; i < s->n_pdb_res; i++) s->pdb_res[i].chain = -1;
  int na = 0;
  for (int i = 0; i < n; i++) {
    if (dropped(&a[i])) continue;
    int c = map_find(&cm, (const char(*)[PX_SIN_NAME])cid, a[i].asym);
    if (c < 0) {
      c = s->n_chain++;
      memcpy(cid[c], a[i].asym, PX_SIN_NAME);
      map_put(&cm, (const char(*)[PX_SIN_NAME])cid, c);
      px_sin_chain *ch = &s->chain[c];
      memcpy(ch->id, a[i].asym, PX_SIN_NAME);
      memcpy(ch->auth_id, a[i].auth_asym, PX_SIN_NAME);
      ch->entity = a[i].entity;
    } else if (s->chain[c].entity != a[i].entity) {
      char c1[32];
      px_shown_name(c1, sizeof c1, a[i].asym);
      free(cid);
      rc = px_fail(PX_ERR_FORMAT, "%s: chain %s holds atoms of two entities", shown, c1);
      goto fail;
    }
    px_sin_atom *t = &s->atom[na++];
    memcpy(t->atom_name, a[i].atom, PX_SIN_NAME);
    memcpy(t->res_name, a[i].res, PX_SIN_NAME);
    size_t k = 0;
    for (; k < sizeof t->element - 1 && a[i].elem[k]; k++)
      t->element[k] = (char)toupper((unsigned char)a[i].elem[k]);
    t->element[k] = 0;
    t->chain = c;
    t->seq_id = a[i].seq;
    t->auth_seq_id = a[i].auth_seq;
    t->ins_code = a[i].ins;
    memcpy(t->xyz, a[i].xyz, sizeof t->xyz);
    if (a[i].rix >= 0 && a[i].rix < s->n_pdb_res) s->pdb_res[a[i].rix].chain = c;
  }
  free(cid);
  s->n_atom = na;
  free(cm.slot);
  *out = s;
  return PX_OK;
fail:
  free(cm.slot);
  sin_entities_free(ent, n_ent);
  free(conn);
  free(pdb_res);
  px_structure_in_free(s);
  return rc;
}
