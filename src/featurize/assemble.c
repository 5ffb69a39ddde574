/* px_featurize: chain selection, crops, hotspots, the binder, tokens and ids, annotations and
 * bonds (featurize.h; upstream: pxdesign/data/infer_data_pipeline.py, json_parser.py,
 * json_to_feature.py, parser.py unique_chain_and_add_ids / add_ref_space_uid,
 * pxdesign/utils/infer.py for PDB chain and residue mapping). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "featurize/featurize_internal.h"

/* Upstream relabels the binder through chain ids sorted as strings (infer_data_pipeline.py
 * change_fake_sequence_to_mask); from the 27th chain on ("AA0" sorts before "B0") that
 * renames a target chain's residues instead, so more target chains than this are refused. */
#define MAX_TARGET_CHAINS 25

void px_design_input_free(px_design_input *d) {
  if (!d) return;
  free(d->ref_pos);
  free(d->ref_charge);
  free(d->ref_mask);
  free(d->ref_element);
  free(d->ref_atom_name_chars);
  free(d->ref_space_uid);
  free(d->atom_to_token_idx);
  free(d->asym_id);
  free(d->residue_index);
  free(d->entity_id);
  free(d->token_index);
  free(d->sym_id);
  free(d->restype);
  free(d->hotspot);
  free(d->conditional_templ);
  free(d->conditional_templ_mask);
  free(d->deletion_mean);
  free(d->atom_name);
  free(d->element);
  free(d->res_name);
  free(d->atom_chain);
  free(d->atom_res_id);
  free(d->is_resolved);
  free(d->xyz_in);
  free(d->token_atom_start);
  free(d->token_chain);
  free(d->chain);
  free(d->bond);
  free(d);
}

/* int_to_letters (protenix data/utils.py): 1 -> A, 26 -> Z, 27 -> AA. */
static void feat_chain_letters(int k, char *out, size_t cap) {
  char tmp[8];
  int n = 0;
  while (k > 0 && n < 7) {
    k--;
    tmp[n++] = (char)('A' + k % 26);
    k /= 26;
  }
  size_t j = 0;
  while (n > 0 && j + 1 < cap) out[j++] = tmp[--n];
  out[j] = 0;
}

/* One task chain resolved: the structure chain, the residues kept, their hotspot marks. */
typedef struct {
  px_fchain fc;
  uint8_t *hot; /* [fc.n_res] */
} feat_sel_chain;

/* Which structure chain a task chain names: mmCIF label_asym_id; PDB an author chain, mapped
 * by the reader's px_sin_pdb_chain with upstream's refusals (io/structure_in.h). */
static int feat_find_chain(const px_structure_in *s, const char *id, const char *file) {
  if (s->from_pdb) {
    int c = -1;
    const int rc = px_sin_pdb_chain(s, id, &c);
    return rc ? rc : c;
  }
  for (int c = 0; c < s->n_chain; c++)
    if (!strcmp(s->chain[c].id, id)) return c;
  char list[256];
  size_t k = 0;
  list[0] = 0;
  for (int c = 0; c < s->n_chain && k + 12 < sizeof list; c++)
    k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", k ? ", " : "", s->chain[c].id);
  return px_fail(PX_ERR_INPUT, "chain %s is not in %s (chains: %s)", id, file, list);
}

/* PDB input: an author residue number of task chain tc -> its residue number in chain c. */
static int feat_pdb_residue(const px_structure_in *s, const px_task_chain *tc, int c, int64_t auth, const char *what,
                       int *r) {
  if (auth < INT32_MIN || auth > INT32_MAX)
    return px_fail(PX_ERR_INPUT, "chain %s: %s residue %lld is not in the file", tc->id, what, (long long)auth);
  int cc = -1;
  const int rc = px_sin_pdb_residue(s, tc->id, (int)auth, &cc, r);
  if (rc) return rc;
  if (cc != c)
    return px_fail(PX_ERR_INPUT, "chain %s: %s residue %lld lies in another chain of the converted file", tc->id,
                   what, (long long)auth);
  return PX_OK;
}

/* Residue numbers of the task (crop ranges, hotspots) in the chain's numbering: mark[r] = 1 for
 * r in 1..n_seq. mmCIF: label_seq_id directly; a crop range must overlap the chain and a
 * hotspot lie inside it. PDB: author numbers, each of which must exist (upstream's strict
 * mapping). */
static int feat_mark_crop(const px_structure_in *s, const px_task_chain *tc, int c, int n_seq, uint8_t *keep) {
  for (int k = 0; k < tc->n_crop; k++) {
    const px_task_range *rg = &tc->crop[k];
    if (rg->lo > rg->hi)
      return px_fail(PX_ERR_INPUT, "chain %s: crop range %d-%d is reversed", tc->id, rg->lo, rg->hi);
    if (!s->from_pdb) {
      if (rg->hi < 1 || rg->lo > n_seq)
        return px_fail(PX_ERR_INPUT, "chain %s: crop %d-%d lies outside the chain (residues 1-%d)", tc->id,
                       rg->lo, rg->hi, n_seq);
      for (int r = rg->lo < 1 ? 1 : rg->lo; r <= rg->hi && r <= n_seq; r++) keep[r] = 1;
    } else {
      /* Every number must exist, so a range longer than the file's residue list fails within
       * n_pdb_res + 1 lookups. */
      for (int64_t a = rg->lo; a <= rg->hi; a++) {
        int r = 0;
        const int rc = feat_pdb_residue(s, tc, c, a, "crop", &r);
        if (rc) return rc;
        if (r >= 1 && r <= n_seq) keep[r] = 1;
      }
    }
  }
  return PX_OK;
}

static int feat_mark_hotspots(const px_structure_in *s, const px_task_chain *tc, int c, int n_seq, uint8_t *hot) {
  for (int k = 0; k < tc->n_hotspot; k++) {
    const int h = tc->hotspot[k];
    int r = h;
    if (s->from_pdb) {
      const int rc = feat_pdb_residue(s, tc, c, h, "hotspot", &r);
      if (rc) return rc;
      if (r < 1 || r > n_seq) continue;
    } else if (r < 1 || r > n_seq) {
      return px_fail(PX_ERR_INPUT, "chain %s: hotspot %d lies outside the chain (residues 1-%d)", tc->id, h,
                     n_seq);
    }
    hot[r] = 1;
  }
  return PX_OK;
}

/* Rebuild, crop and mark one task chain. */
static int feat_select_chain(const px_structure_in *s, const px_task *t, int k, feat_sel_chain *out) {
  const px_task_chain *tc = &t->chain[k];
  const char *file = t->structure_file ? t->structure_file : "the structure";
  int rc = feat_find_chain(s, tc->id, file);
  if (rc < 0) return rc;
  const int c = rc;
  rc = px_feat_rebuild_chain(s, c, &out->fc);
  if (rc) return rc;
  const int n_seq = out->fc.n_seq;
  uint8_t *keep = calloc((size_t)n_seq + 1, 1), *hot = calloc((size_t)n_seq + 1, 1);
  if (!keep || !hot) {
    rc = px_fail(PX_ERR_NOMEM, "out of memory selecting chain %s", tc->id);
    goto done;
  }
  if (tc->n_crop) {
    rc = feat_mark_crop(s, tc, c, n_seq, keep);
    if (rc) goto done;
  } else {
    memset(keep, 1, (size_t)n_seq + 1);
  }
  rc = feat_mark_hotspots(s, tc, c, n_seq, hot);
  if (rc) goto done;
  int m = 0;
  for (int j = 0; j < out->fc.n_res; j++)
    if (keep[out->fc.res[j].seq_id]) out->fc.res[m++] = out->fc.res[j];
  out->fc.n_res = m;
  if (!m) {
    rc = px_fail(PX_ERR_INPUT, "chain %s: no resolved residue %s", tc->id,
                 tc->n_crop ? "inside the crop" : "in the file");
    goto done;
  }
  out->hot = calloc((size_t)m, 1);
  if (!out->hot) {
    rc = px_fail(PX_ERR_NOMEM, "out of memory selecting chain %s", tc->id);
    goto done;
  }
  for (int j = 0; j < m; j++) out->hot[j] = hot[out->fc.res[j].seq_id];
done:
  free(keep);
  free(hot);
  return rc;
}

#define ALLOC(p, n)                                                          \
  do {                                                                       \
    (p) = calloc((size_t)(n) > 0 ? (size_t)(n) : 1, sizeof *(p));              \
    if (!(p)) goto oom;                                                      \
  } while (0)

static int feat_is_covalent_conn(const char *type) {
  /* biotite's PDBX_COVALENT_TYPES without "metalc", which Protenix removes (parser.py). */
  static const char *const types[] = {"covale", "covale_base", "covale_phosphate", "covale_sugar",
                                      "disulf", "modres",      "modres_link"};
  for (size_t k = 0; k < sizeof types / sizeof *types; k++)
    if (!strcmp(type, types[k])) return 1;
  return 0;
}

static int feat_bond_cmp(const void *pa, const void *pb) {
  const px_design_bond *a = pa, *b = pb;
  if (a->a != b->a) return a->a < b->a ? -1 : 1;
  return (a->b > b->b) - (a->b < b->b);
}

/* The input's covalent _struct_conn bonds that survive: upstream parses them (distance < 2.4 A),
 * keeps those between matched atoms, and then takes each task chain as a slice of the atom
 * array, which keeps only bonds inside the chain; the crop is another slice. Only bonds
 * between different residues are written (biotite's struct_conn). */
/* The kept, resolved atom of chain k named by a _struct_conn partner (residue number, residue
 * name, atom name), or -1. Tokens of a chain ascend in residue number: binary search. The
 * reader renamed MSE to MET (SE to SD) in atom_site but not in _struct_conn, where biotite
 * matched the file's names. */
static int feat_conn_atom(const px_design_input *d, int k, int seq, const char *comp, const char *atom) {
  const px_design_chain *dc = &d->chain[k];
  int lo = dc->token_start, hi = dc->token_start + dc->n_token;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (d->residue_index[mid] < seq) lo = mid + 1;
    else hi = mid;
  }
  if (lo >= dc->token_start + dc->n_token || d->residue_index[lo] != seq) return -1;
  const int mse = !strcmp(comp, "MSE");
  const char *want_res = mse ? "MET" : comp, *want_atom = mse && !strcmp(atom, "SE") ? "SD" : atom;
  for (int i = d->token_atom_start[lo]; i < d->token_atom_start[lo + 1]; i++) {
    if (strcmp(d->res_name[i], want_res)) return -1;
    if (!strcmp(d->atom_name[i], want_atom)) return d->is_resolved[i] ? i : -1;
  }
  return -1;
}

/* The input's covalent _struct_conn bonds that survive: upstream parses them (distance < 2.4 A),
 * keeps those between matched atoms, and then takes each task chain as a slice of the atom
 * array, which keeps only bonds inside the chain; the crop is another slice. Only bonds
 * between different residues are written (biotite's struct_conn). Not reproduced: biotite also
 * matches the rows' alt ids against atom_site's (a row naming no altloc misses an atom that
 * has one); the reader does not keep atoms' alt ids. */
static int feat_collect_bonds(const px_structure_in *s, px_design_input *d, const feat_sel_chain *sel, int n_sel) {
  if (s->from_pdb || s->n_conn <= 0) return PX_OK;
  d->bond = calloc((size_t)s->n_conn, sizeof *d->bond);
  if (!d->bond) return px_fail(PX_ERR_NOMEM, "out of memory collecting bonds");
  int nb = 0;
  for (int q = 0; q < s->n_conn; q++) {
    const px_sin_conn *cn = &s->conn[q];
    if (!feat_is_covalent_conn(cn->conn_type) || strcmp(cn->asym[0], cn->asym[1])) continue;
    /* biotite takes only rows between atoms of the asymmetric unit (symmetry 1_555). */
    if (strcmp(cn->symmetry[0], "1_555") || strcmp(cn->symmetry[1], "1_555")) continue;
    if (cn->seq[0] == cn->seq[1]) continue;
    int atom[2] = {-1, -1};
    for (int k = 0; k < n_sel; k++) {
      if (strcmp(s->chain[sel[k].fc.chain].id, cn->asym[0])) continue;
      for (int p = 0; p < 2; p++) atom[p] = feat_conn_atom(d, k, cn->seq[p], cn->comp[p], cn->atom[p]);
      break;
    }
    if (atom[0] < 0 || atom[1] < 0) continue;
    const float *x = &d->xyz_in[(size_t)atom[0] * 3], *y = &d->xyz_in[(size_t)atom[1] * 3];
    const float dx = x[0] - y[0], dy = x[1] - y[1], dz = x[2] - y[2];
    if (!(sqrtf(dx * dx + dy * dy + dz * dz) < 2.4f)) continue;
    px_design_bond *bd = &d->bond[nb++];
    bd->a = atom[0] < atom[1] ? atom[0] : atom[1];
    bd->b = atom[0] < atom[1] ? atom[1] : atom[0];
    snprintf(bd->conn_type, sizeof bd->conn_type, "%s", cn->conn_type);
  }
  /* Sorted, one entry per atom pair (a BondList holds a pair once). */
  qsort(d->bond, (size_t)nb, sizeof *d->bond, feat_bond_cmp);
  int m = 0;
  for (int e = 0; e < nb; e++)
    if (!m || d->bond[m - 1].a != d->bond[e].a || d->bond[m - 1].b != d->bond[e].b) d->bond[m++] = d->bond[e];
  d->n_bond = m;
  return PX_OK;
}

int px_featurize(const px_structure_in *s, const px_task *t, const px_conformers *conf, uint64_t seed,
                 int augment, px_design_input **out) {
  if (!out) return px_fail(PX_ERR_INPUT, "px_featurize: NULL output");
  *out = NULL;
  if (!s || !t) return px_fail(PX_ERR_INPUT, "px_featurize: NULL structure or task");
  const char *tname = t->name ? t->name : "task";
  if (t->n_chain <= 0 || !t->chain)
    return px_fail(PX_ERR_INPUT, "task %s: no target chain selected", tname);
  if (t->n_chain > MAX_TARGET_CHAINS)
    return px_fail(PX_ERR_INPUT, "task %s: %d target chains; at most %d are supported (upstream mislabels "
                   "the binder beyond that)", tname, t->n_chain, MAX_TARGET_CHAINS);
  if (t->binder_length < 1 || t->binder_length > PX_FEAT_MAX_BINDER)
    return px_fail(PX_ERR_INPUT, "task %s: binder_length %d is outside 1..%d", tname, t->binder_length,
                   PX_FEAT_MAX_BINDER);
  for (int k = 0; k < t->n_chain; k++) {
    if (!t->chain[k].id || !t->chain[k].id[0])
      return px_fail(PX_ERR_INPUT, "task %s: target chain %d has no id", tname, k + 1);
    for (int j = 0; j < k; j++)
      if (!strcmp(t->chain[j].id, t->chain[k].id))
        return px_fail(PX_ERR_INPUT, "task %s: chain %s is selected twice", tname, t->chain[k].id);
  }

  const int nsel = t->n_chain, L = t->binder_length;
  feat_sel_chain *sel = calloc((size_t)nsel, sizeof *sel);
  px_design_input *d = NULL;
  const px_res_template **tmpl = NULL;
  int *tmpl_atom = NULL, *rep = NULL;
  int rc = PX_OK;
  if (!sel) return px_fail(PX_ERR_NOMEM, "out of memory featurizing %s", tname);
  for (int k = 0; k < nsel; k++) {
    rc = feat_select_chain(s, t, k, &sel[k]);
    if (rc) goto fail;
  }

  int T = L, N = 4 * L + 1;
  for (int k = 0; k < nsel; k++) {
    T += sel[k].fc.n_res;
    for (int j = 0; j < sel[k].fc.n_res; j++) N += sel[k].fc.res[j].n_atom;
  }
  const int nc = nsel + 1;
  d = calloc(1, sizeof *d);
  if (!d) goto oom;
  d->n_token = T;
  d->n_atom = N;
  d->n_chain = nc;
  d->binder_length = L;
  ALLOC(d->ref_pos, (size_t)N * 3);
  ALLOC(d->ref_charge, N);
  ALLOC(d->ref_mask, N);
  ALLOC(d->ref_element, (size_t)N * 128);
  ALLOC(d->ref_atom_name_chars, (size_t)N * 256);
  ALLOC(d->ref_space_uid, N);
  ALLOC(d->atom_to_token_idx, N);
  ALLOC(d->asym_id, T);
  ALLOC(d->residue_index, T);
  ALLOC(d->entity_id, T);
  ALLOC(d->token_index, T);
  ALLOC(d->sym_id, T);
  ALLOC(d->restype, (size_t)T * PX_FEAT_N_RESTYPE);
  ALLOC(d->hotspot, T);
  ALLOC(d->conditional_templ, (size_t)T * T);
  ALLOC(d->conditional_templ_mask, (size_t)T * T);
  ALLOC(d->deletion_mean, T);
  ALLOC(d->atom_name, N);
  ALLOC(d->element, N);
  ALLOC(d->res_name, N);
  ALLOC(d->atom_chain, N);
  ALLOC(d->atom_res_id, N);
  ALLOC(d->is_resolved, N);
  ALLOC(d->xyz_in, (size_t)N * 3);
  ALLOC(d->token_atom_start, T + 1);
  ALLOC(d->token_chain, T);
  ALLOC(d->chain, nc);
  ALLOC(tmpl, N);
  ALLOC(tmpl_atom, N);
  ALLOC(rep, T);

  /* entity_id = rank of the entity strings "1".."nc" sorted as strings (upstream sorts
   * label_entity_id with np.sort on strings: "10" < "2"). */
  int *ent_rank = NULL;
  ALLOC(ent_rank, nc);
  for (int k = 0; k < nc; k++) {
    char a[16], b[16];
    snprintf(a, sizeof a, "%d", k + 1);
    int r = 0;
    for (int j = 0; j < nc; j++) {
      snprintf(b, sizeof b, "%d", j + 1);
      r += strcmp(b, a) < 0;
    }
    ent_rank[k] = r;
  }

  const px_res_template *gly = px_res_template_find("GLY");
  int tok = 0, at = 0;
  for (int k = 0; k < nc; k++) {
    px_design_chain *dc = &d->chain[k];
    feat_chain_letters(k + 1, dc->label, sizeof dc->label - 1);
    strcat(dc->label, "0");
    snprintf(dc->entity, sizeof dc->entity, "%d", k + 1);
    dc->is_binder = k == nsel;
    if (!dc->is_binder) snprintf(dc->source, sizeof dc->source, "%s", t->chain[k].id);
    dc->token_start = tok;
    dc->atom_start = at;
    const int nres = dc->is_binder ? L : sel[k].fc.n_res;
    for (int j = 0; j < nres; j++) {
      const px_fres *x = dc->is_binder ? NULL : &sel[k].fc.res[j];
      const px_res_template *tp = x ? x->tmpl : gly;
      const int na = x ? x->n_atom : (j == L - 1 ? 5 : 4);
      const int res_id = x ? x->seq_id : j + 1;
      d->token_index[tok] = tok;
      d->residue_index[tok] = res_id;
      d->asym_id[tok] = k;
      d->entity_id[tok] = ent_rank[k];
      d->sym_id[tok] = 0;
      d->restype[(size_t)tok * PX_FEAT_N_RESTYPE + (size_t)(x ? tp->restype : PX_FEAT_RESTYPE_BINDER)] = 1.0f;
      d->hotspot[tok] = x && sel[k].hot[j] ? 1.0f : 0.0f;
      d->token_atom_start[tok] = at;
      d->token_chain[tok] = k;
      rep[tok] = -1;
      for (int a = 0; a < na; a++) {
        /* The binder's atoms are GLY's N CA C O (+ OXT, the template's last atom). */
        const int ta = (!x && a == 4) ? tp->n_atom - 1 : a;
        snprintf(d->atom_name[at], sizeof d->atom_name[at], "%s", tp->atom[ta]);
        snprintf(d->element[at], sizeof d->element[at], "%s", tp->element[ta]);
        snprintf(d->res_name[at], sizeof d->res_name[at], "%s", x ? tp->name : "xpb");
        d->atom_chain[at] = k;
        d->atom_res_id[at] = res_id;
        d->is_resolved[at] = x ? x->resolved[ta] : 1;
        if (x && x->resolved[ta]) memcpy(&d->xyz_in[(size_t)at * 3], x->xyz[ta], 3 * sizeof(float));
        d->ref_space_uid[at] = tok;
        d->atom_to_token_idx[at] = tok;
        tmpl[at] = tp;
        tmpl_atom[at] = ta;
        /* Representative atom: CB, CA for GLY; binder tokens are never templated. */
        if (x && !strcmp(tp->atom[ta], strcmp(tp->name, "GLY") ? "CB" : "CA")) rep[tok] = at;
        at++;
      }
      tok++;
    }
    dc->n_token = tok - dc->token_start;
    dc->n_atom = at - dc->atom_start;
  }
  d->token_atom_start[T] = at;
  free(ent_rank);

  /* The augmentation's streams: (seed, task name's FNV-1a hash, ref_space_uid). */
  uint32_t task_hash = 2166136261u;
  for (const unsigned char *c = (const unsigned char *)(t->name ? t->name : ""); *c; c++)
    task_hash = (task_hash ^ *c) * 16777619u;
  rc = px_feat_reference(d, tmpl, tmpl_atom, conf, seed, task_hash, augment);
  if (rc) goto fail;
  px_feat_template_bins(d, rep);
  rc = feat_collect_bonds(s, d, sel, nsel);
  if (rc) goto fail;

  d->f.n_token = T;
  d->f.n_atom = N;
  d->f.ref_pos = d->ref_pos;
  d->f.ref_charge = d->ref_charge;
  d->f.ref_mask = d->ref_mask;
  d->f.ref_element = d->ref_element;
  d->f.ref_atom_name_chars = d->ref_atom_name_chars;
  d->f.ref_space_uid = d->ref_space_uid;
  d->f.atom_to_token_idx = d->atom_to_token_idx;
  d->f.asym_id = d->asym_id;
  d->f.residue_index = d->residue_index;
  d->f.entity_id = d->entity_id;
  d->f.token_index = d->token_index;
  d->f.sym_id = d->sym_id;

  *out = d;
  d = NULL; /* the caller's now */
  rc = PX_OK;
  goto done;

oom:
  rc = px_fail(PX_ERR_NOMEM, "out of memory featurizing %s", tname);
fail:
done:
  for (int k = 0; k < nsel; k++) {
    px_feat_fchain_free(&sel[k].fc);
    free(sel[k].hot);
  }
  free(sel);
  free(tmpl);
  free(tmpl_atom);
  free(rep);
  px_design_input_free(d);
  return rc;
}
