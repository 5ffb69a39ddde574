/* The text formats of campaigns (campaign.h) that need no system call: `--shard K/N` and the
 * rows of designs.csv (written and read back). Kept apart from campaign.c so that the libFuzzer
 * harness fuzz/fuzz_campaign.c can compile them alone. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/campaign.h"
#include "error.h"
#include "io/strbuf.h"
#include "pxdiff.h"

int campaign_parse_shard(const char *text, campaign_shard *s) {
  s->k = s->n = 1;
  if (text && *text) {
    char *end;
    errno = 0;
    long k = (text[0] >= '0' && text[0] <= '9') ? strtol(text, &end, 10) : -1;
    long n = -1;
    if (k >= 0 && !errno && *end == '/' && end[1] >= '0' && end[1] <= '9') n = strtol(end + 1, &end, 10);
    if (errno || n < 1 || *end || n > 100000 || k < 1 || k > n) {
      /* the value is echoed only when it keeps the message on one line */
      int plain = strlen(text) <= 40;
      for (const unsigned char *p = (const unsigned char *)text; *p && plain; p++) plain = *p >= ' ' && *p != 127;
      return px_fail(PX_ERR_INPUT, "--shard: '%s' is not K/N with 1 <= K <= N <= 100000 (shard K of N, e.g. 2/8)",
                     plain ? text : "(that value)");
    }
    s->k = (int)k;
    s->n = (int)n;
  }
  snprintf(s->tag, sizeof s->tag, "shard_%d_of_%d", s->k, s->n);
  return PX_OK;
}

int campaign_owns(const campaign_shard *s, long unit) { return unit % s->n == s->k - 1; }

void campaign_free_strings(char **v, int n) {
  for (int i = 0; i < n && v; i++) free(v[i]);
  free(v);
}

int campaign_push_string(char ***v, int *n, int *cap, const char *s) {
  if (*n == *cap) {
    int c = *cap ? 2 * *cap : 8;
    char **nv = realloc(*v, sizeof *nv * (size_t)c);
    if (!nv) return px_fail(PX_ERR_NOMEM, "out of memory");
    *v = nv;
    *cap = c;
  }
  const size_t l = strlen(s) + 1;
  if (!((*v)[*n] = malloc(l))) return px_fail(PX_ERR_NOMEM, "out of memory");
  memcpy((*v)[*n], s, l);
  (*n)++;
  return PX_OK;
}

/* A CSV field: quoted when it holds a comma, quote or line break. */
static void csv_field(px_strbuf *b, const char *s) {
  if (!strpbrk(s, ",\"\n\r")) {
    px_sb_str(b, s);
    return;
  }
  px_sb_str(b, "\"");
  for (const char *p = s; *p; p++) {
    px_sb_put(b, p, 1);
    if (*p == '"') px_sb_put(b, p, 1); /* a quote is doubled */
  }
  px_sb_str(b, "\"");
}

void campaign_csv_format(px_strbuf *b, const char *task, uint64_t seed, long sample, const char *file,
                         int binder_length, double seconds) {
  csv_field(b, task);
  px_sb_printf(b, ",%llu,%ld,", (unsigned long long)seed, sample);
  csv_field(b, file);
  if (seconds >= 0) px_sb_printf(b, ",%d,%.3f\n", binder_length, seconds);
  else px_sb_printf(b, ",%d,\n", binder_length);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int campaign_csv_parse(const char *text, size_t len, campaign_listed *out) {
  memset(out, 0, sizeof *out);
  int cap = 0, rc = PX_OK;
  const char *q = memchr(text, '\n', len), *end = text + len;
  /* after the header line, rows as campaign_csv_format writes them: fields quoted when they
   * hold , " or a line break, a quote doubled inside; a last line without its newline is not
   * a row (an appender's line is one write, so only a truncated file ends that way) */
  while (q && ++q < end && !rc) {
    px_strbuf f = {0};
    int field = 0, quoted = 0;
    for (; q < end; q++) {
      if (quoted) {
        if (*q == '"' && q + 1 < end && q[1] == '"') {
          if (field == 3) px_sb_put(&f, q, 1);
          q++;
        } else if (*q == '"') {
          quoted = 0;
        } else if (field == 3) {
          px_sb_put(&f, q, 1);
        }
      } else if (*q == '"') {
        quoted = 1;
      } else if (*q == ',') {
        field++;
      } else if (*q == '\n') {
        break;
      } else if (field == 3) {
        px_sb_put(&f, q, 1);
      }
    }
    if (q >= end) {
      free(f.p);
      break;
    }
    if (f.oom) rc = px_fail(PX_ERR_NOMEM, "out of memory reading designs.csv");
    else if (field == 5 && (!f.p || strlen(f.p) == f.n)) /* (a NUL inside: not a row of ours) */
      rc = campaign_push_string(&out->file, &out->n, &cap, f.p ? f.p : "");
    free(f.p);
  }
  if (rc) {
    campaign_listed_free(out);
    return rc;
  }
  if (out->n) qsort(out->file, (size_t)out->n, sizeof *out->file, cmp_str);
  return PX_OK;
}

int campaign_listed_has(const campaign_listed *l, const char *file) {
  return l->n && bsearch(&file, l->file, (size_t)l->n, sizeof *l->file, cmp_str) != NULL;
}

void campaign_listed_free(campaign_listed *l) {
  campaign_free_strings(l->file, l->n);
  memset(l, 0, sizeof *l);
}
