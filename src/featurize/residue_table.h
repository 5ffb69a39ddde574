/* The built-in residue templates (src/featurize/residue_table.c, generated from
 * data/residue_templates.tsv by scripts/gen_residue_table.py): what PXDesign takes from the
 * CCD for a standard residue (atom list in CCD order, elements, formal charges) plus the CCD
 * ideal coordinates, pxdiff's default reference conformer. */
#ifndef PX_FEATURIZE_RESIDUE_TABLE_H
#define PX_FEATURIZE_RESIDUE_TABLE_H

#define PX_RES_MAX_ATOM 16   /* TRP with OXT has 15 */
#define PX_N_RES_TEMPLATES 21 /* 20 amino acids + UNK, in restype order */

typedef struct {
  char name[4];     /* "ALA" */
  char one_letter;  /* CCD one-letter code ('X' for UNK) */
  int restype;      /* PXDesign's restype index (0..20) */
  int n_atom;       /* heavy atoms including OXT, which is always last */
  char atom[PX_RES_MAX_ATOM][5];
  char element[PX_RES_MAX_ATOM][3];
  int atomic_number[PX_RES_MAX_ATOM];
  int charge[PX_RES_MAX_ATOM];
  float ideal[PX_RES_MAX_ATOM][3];
} px_res_template;

extern const px_res_template px_res_templates[PX_N_RES_TEMPLATES];

/* The template of a residue name, or NULL when it is not a standard residue. */
const px_res_template *px_res_template_find(const char *name);
/* Index of an atom name in a template, or -1. */
int px_res_template_atom(const px_res_template *t, const char *atom);

#endif
