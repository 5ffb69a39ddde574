/* libFuzzer harness: the campaign formats (src/cli/campaign_parse.c, docs/campaign.md).
 * The input is read three ways:
 *  - as a `--shard` value: either K/N with 1 <= K <= N <= 100000 whose numbers are the text's,
 *    or one non-empty line naming --shard;
 *  - as a designs.csv text: the files it lists come back sorted, at most one per line;
 *  - as a file name (up to its first NUL) written into a row by the writer and read back:
 *    exactly that name, whatever it holds (commas, quotes, line breaks). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* run.sh links the platform and strbuf sources; the error slot and the formats are compiled
 * in here. */
#include "cli/campaign_parse.c"
#include "error.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *t = malloc(size + 1);
  if (!t) return 0;
  memcpy(t, data, size);
  t[size] = '\0';

  campaign_shard s;
  if (campaign_parse_shard(t, &s) == PX_OK) {
    if (s.k < 1 || s.k > s.n || s.n > 100000) abort();
    if (*t) {
      char *end;
      if (strtol(t, &end, 10) != s.k || *end != '/' || strtol(end + 1, &end, 10) != s.n || *end) abort();
    } else if (s.k != 1 || s.n != 1) {
      abort();
    }
  } else {
    const char *m = px_last_error();
    if (!m[0] || strchr(m, '\n') || !strstr(m, "--shard")) abort();
  }

  campaign_listed l;
  if (campaign_csv_parse((const char *)data, size, &l) != PX_OK) abort();
  size_t lines = 0;
  for (size_t i = 0; i < size; i++) lines += data[i] == '\n';
  if ((size_t)l.n > lines) abort();
  for (int i = 1; i < l.n; i++)
    if (strcmp(l.file[i - 1], l.file[i]) > 0) abort();
  for (int i = 0; i < l.n; i++)
    if (!campaign_listed_has(&l, l.file[i])) abort();
  campaign_listed_free(&l);

  px_strbuf b = {0};
  px_sb_str(&b, "task,seed,sample,file,binder_length,seconds\n");
  campaign_csv_format(&b, "a \"task\", quoted", 7, 3, t, 80, size % 2 ? -1.0 : 1.25);
  if (b.oom) abort();
  if (campaign_csv_parse(b.p, b.n, &l) != PX_OK || l.n != 1 || strcmp(l.file[0], t)) abort();
  if (!campaign_listed_has(&l, t)) abort();
  campaign_listed_free(&l);
  free(b.p);
  free(t);
  return 0;
}
