/* The record of one (task, seed) case (design_record.h): its fingerprint and summary.json. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/design_record.h"
#include "error.h"
#include "io/strbuf.h"

uint64_t design_case_fingerprint(const design_opts *o, const design_models *M, const px_model *eng,
                                 const design_case *C, uint64_t seed, const char *model_desc) {
  char buf[2048], fields[400];
  run_sampler_fields(fields, sizeof fields, &o->cfg, seed);
  const char *backend = px_model_backend_name(eng);
  snprintf(buf, sizeof buf, "pxdiff-design v1|%s|features=%016llx|model=%s|params=%lld|device=%.4s|prec=%s|dtype=%s",
           fields, (unsigned long long)px_features_hash(M->model, &C->f), model_desc, (long long)M->n_params,
           backend ? backend : "?", px_model_precision_name(eng), o->dtype == DESIGN_DTYPE_BF16 ? "bf16" : "fp32");
  /* --pdb files are part of the run: a resume must write them the same way */
  if (o->pdb) {
    size_t l = strlen(buf);
    snprintf(buf + l, sizeof buf - l, "|pdb=%s", o->binder_first ? "binder-first" : "task-order");
  }
  /* on a GPU the chunk changes the designs (its GEMMs' shapes): a resume must use the same
   * (on the CPU it changes nothing, and the run ids stay those of earlier versions) */
  if (backend && !strncmp(backend, "cuda", 4)) {
    size_t l = strlen(buf);
    snprintf(buf + l, sizeof buf - l, "|chunk=%ld", o->chunk < o->n_sample ? o->chunk : o->n_sample);
  }
  return run_fingerprint(buf);
}

/* extra: further top-level lines (the contexts of a several-context run), or NULL. */
char *design_case_summary(const design_opts *o, const design_models *M, const px_model *eng, int n_ctx,
                          const design_case *C, const run_out *r, const px_task *task, uint64_t seed,
                          const char *model_desc, double t_sampling, int sampled, int computed,
                          const char (*letter)[2], const char *extra) {
  px_strbuf b = {0};
  char fl[2][32];
  run_fmt_float(fl[0], 32, o->eta_min);
  run_fmt_float(fl[1], 32, o->eta_max);
  px_sb_printf(&b, "{\n  \"pxdiff_version\": \"%s\",\n  \"command\": \"%s\",\n  \"complete\": true,\n",
               PXDIFF_VERSION, o->demo ? "demo" : "design");
  px_sb_printf(&b, "  \"synthetic_weights\": %s,\n", o->demo ? "true" : "false");
  if (o->demo) px_sb_printf(&b, "  \"note\": \"%s\",\n", SYNTH_LABEL);
  px_sb_printf(&b, "  \"model\": ");
  px_sb_json_string(&b, model_desc);
  px_sb_printf(&b, ",\n  \"model_parameters\": %lld,\n  \"task\": ", (long long)M->n_params);
  px_sb_json_string(&b, task->name);
  px_sb_printf(&b, ",\n  \"structure_file\": ");
  px_sb_json_string(&b, o->demo ? "(built-in PD-L1, PDB 5O45 chain A)" : task->structure_file);
  px_sb_printf(&b, ",\n  \"seed\": %llu,\n  \"n_tokens\": %d,\n  \"n_atoms\": %d,\n  \"binder_length\": %d,\n",
               (unsigned long long)seed, C->in->n_token, C->in->n_atom, task->binder_length);
  px_sb_printf(&b, "  \"run_id\": \"%016llx\",\n", (unsigned long long)r->run_id);
  px_sb_printf(&b, "  \"settings\": {\n    \"N_sample\": %ld,\n    \"N_step\": %d,\n    \"dtype\": \"%s\",\n",
               o->n_sample, o->cfg.n_step, o->dtype == DESIGN_DTYPE_BF16 ? "bf16" : "fp32");
  px_sb_printf(&b, "    \"eta_type\": \"%s\",\n    \"eta_min\": %s,\n    \"eta_max\": %s,\n",
               px_eta_type_name(o->eta_type), fl[0], fl[1]);
  px_sb_printf(&b, "    \"chunk\": %ld,\n", o->chunk < o->n_sample ? o->chunk : o->n_sample);
  px_sb_printf(&b, "    \"device\": \"%s\",\n", n_ctx > 1 ? o->device_text : px_model_backend_name(eng));
  px_sb_printf(&b, "    \"precision\": \"%s\",\n    \"x16_token_blocks\": %d,\n    \"x16_atom_blocks\": %d,\n",
               px_model_precision_name(eng), px_model_x16_blocks(eng), px_model_x16_atom_blocks(eng));
  px_sb_printf(&b, "    \"threads\": %d,\n", px_num_threads());
  px_sb_printf(&b, "    \"reference_conformers\": ");
  px_sb_json_string(&b, o->conformers ? o->conformers : "built-in (CCD ideal coordinates)");
  px_sb_printf(&b, ",\n    \"augment_ref_pos\": %s\n  },\n", o->no_augment ? "false" : "true");
  if (letter) { /* --pdb: the one-character chain ids the PDB files use */
    px_sb_printf(&b, "  \"pdb\": {\"binder_first\": %s, \"chain_ids\": {", o->binder_first ? "true" : "false");
    for (int c = 0; c < C->in->n_chain; c++) {
      px_sb_str(&b, c ? ", " : "");
      px_sb_json_string(&b, C->in->chain[c].label);
      px_sb_str(&b, ": ");
      px_sb_json_string(&b, letter[c]);
    }
    px_sb_str(&b, "}},\n");
  }
  if (extra) px_sb_str(&b, extra);
  px_sb_printf(&b, "  \"timings\": {\n    \"featurize_s\": %.4f,\n    \"embed_s\": %.4f,\n    \"design_s\": %.4f,\n",
               C->t_featurize, C->t_embed, C->t_design);
  px_sb_printf(&b, "    \"sampling_s\": %.3f,\n    \"s_per_design\": ", t_sampling);
  if (sampled) px_sb_printf(&b, "%.4f", t_sampling / sampled);
  else px_sb_printf(&b, "null");
  px_sb_printf(&b, "\n  },\n  \"samples_computed\": %d,\n  \"samples_resumed\": %ld,\n  \"files\": ", computed,
               r->n_have);
  run_summary_files(&b, r);
  px_sb_printf(&b, "\n}\n");
  if (b.oom) {
    free(b.p);
    px_fail(PX_ERR_NOMEM, "out of memory writing summary.json");
    return NULL;
  }
  return b.p;
}
