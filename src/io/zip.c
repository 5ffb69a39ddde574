/* Zip reader for torch.save archives (see zip.h). Everything is bounds-checked against
 * the file size before it is read; only the central directory is held in memory. */
#include "io/strbuf.h"
#include "io/zip.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform.h"
#include "pxdiff.h"

#define ZIP_MAX_ENTRIES (1 << 20)
#define ZIP_MAX_CD ((uint64_t)256 << 20)
#define ZIP_EOCD_MAX_TAIL (22 + 65535)


static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

static int cmp_entry_ptr(const void *a, const void *b) {
  return strcmp((*(px_zip_entry *const *)a)->name, (*(px_zip_entry *const *)b)->name);
}

void px_zip_close(px_zip *z) {
  if (!z) return;
  if (z->e)
    for (int i = 0; i < z->n; i++) free(z->e[i].name);
  free(z->e);
  free(z->sorted);
  memset(z, 0, sizeof *z);
}

int px_zip_check_stored(const px_zip_entry *e, const char *path, char *err, size_t errlen) {
  if (e->method != 0)
    return px_errf(err, errlen, PX_ERR_FORMAT,
                 "%s: entry %s is compressed (method %u); pxdiff reads only stored entries", path,
                 e->name, (unsigned)e->method);
  return 0;
}

const px_zip_entry *px_zip_find(const px_zip *z, const char *name) {
  int lo = 0, hi = z->n - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2;
    int c = strcmp(z->e[z->sorted[mid]].name, name);
    if (c == 0) return &z->e[z->sorted[mid]];
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return NULL;
}

int px_zip_open(int fd, uint64_t fsize, const char *path, px_zip *z, char *err, size_t errlen) {
  memset(z, 0, sizeof *z);
  int rc = 0;
  uint8_t *tail = NULL, *cd = NULL, *lh = NULL;
  if (fsize < 22)
    return px_errf(err, errlen, PX_ERR_FORMAT, "%s: too short for a zip archive (%llu bytes)", path,
                 (unsigned long long)fsize);
  size_t tail_len = fsize < ZIP_EOCD_MAX_TAIL ? (size_t)fsize : (size_t)ZIP_EOCD_MAX_TAIL;
  uint64_t tail_at = fsize - tail_len;
  tail = malloc(tail_len);
  if (!tail) return px_errf(err, errlen, PX_ERR_NOMEM, "%s: out of memory", path);
  if (px_file_pread(fd, tail, tail_len, tail_at) != 0) {
    rc = px_errf(err, errlen, PX_ERR_IO, "%s: cannot read %zu bytes at offset %llu", path, tail_len,
               (unsigned long long)tail_at);
    goto done;
  }
  /* End of central directory: prefer a record whose comment ends the file exactly. */
  long found = -1, fallback = -1;
  for (long i = (long)tail_len - 22; i >= 0; i--) {
    if (rd32(tail + i) != 0x06054b50u) continue;
    uint64_t end = (uint64_t)i + 22 + rd16(tail + i + 20);
    if (end == tail_len) { found = i; break; }
    if (end < tail_len && fallback < 0) fallback = i;
  }
  if (found < 0) found = fallback;
  if (found < 0) {
    rc = px_errf(err, errlen, PX_ERR_FORMAT,
               "%s: no zip end-of-central-directory record (truncated or not a zip archive)", path);
    goto done;
  }
  uint64_t eocd_pos = tail_at + (uint64_t)found;
  const uint8_t *eo = tail + found;
  uint64_t disk = rd16(eo + 4), cd_disk = rd16(eo + 6), n_disk = rd16(eo + 8), n = rd16(eo + 10);
  uint64_t cd_size = rd32(eo + 12), cd_off = rd32(eo + 16);
  uint64_t cd_end = eocd_pos;
  int have_loc = eocd_pos >= 20 && (uint64_t)found >= 20 && rd32(eo - 20) == 0x07064b50u;
  if (!have_loc && eocd_pos >= 20 && (uint64_t)found < 20) {
    uint8_t loc[4];
    if (px_file_pread(fd, loc, 4, eocd_pos - 20) == 0 && rd32(loc) == 0x07064b50u) have_loc = 1;
  }
  if (have_loc) {
    uint8_t loc[20], z64[56];
    if (px_file_pread(fd, loc, 20, eocd_pos - 20) != 0) {
      rc = px_errf(err, errlen, PX_ERR_IO, "%s: cannot read zip64 locator at offset %llu", path,
                 (unsigned long long)(eocd_pos - 20));
      goto done;
    }
    uint64_t z64_off = rd64(loc + 8);
    if (z64_off > eocd_pos - 20 || eocd_pos - 20 - z64_off < 56) {
      rc = px_errf(err, errlen, PX_ERR_FORMAT,
                 "%s: zip64 end record offset %llu (locator at offset %llu) is out of range", path,
                 (unsigned long long)z64_off, (unsigned long long)(eocd_pos - 20));
      goto done;
    }
    if (px_file_pread(fd, z64, 56, z64_off) != 0 || rd32(z64) != 0x06064b50u) {
      rc = px_errf(err, errlen, PX_ERR_FORMAT, "%s: no zip64 end record at offset %llu", path,
                 (unsigned long long)z64_off);
      goto done;
    }
    disk = rd32(z64 + 16);
    cd_disk = rd32(z64 + 20);
    n_disk = rd64(z64 + 24);
    n = rd64(z64 + 32);
    cd_size = rd64(z64 + 40);
    cd_off = rd64(z64 + 48);
    cd_end = z64_off;
  } else if (n == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
    rc = px_errf(err, errlen, PX_ERR_FORMAT,
               "%s: zip end record at offset %llu needs a zip64 locator, which is missing", path,
               (unsigned long long)eocd_pos);
    goto done;
  }
  if (disk != 0 || cd_disk != 0 || n_disk != n) {
    rc = px_errf(err, errlen, PX_ERR_FORMAT, "%s: multi-part zip archives are not supported", path);
    goto done;
  }
  if (n > ZIP_MAX_ENTRIES) {
    rc = px_errf(err, errlen, PX_ERR_FORMAT, "%s: zip archive claims %llu entries (limit %d)", path,
               (unsigned long long)n, ZIP_MAX_ENTRIES);
    goto done;
  }
  if (cd_off > cd_end || cd_size > cd_end - cd_off || cd_size > ZIP_MAX_CD || n * 46 > cd_size) {
    rc = px_errf(err, errlen, PX_ERR_FORMAT,
               "%s: zip central directory (offset %llu, %llu bytes, %llu entries) does not fit "
               "before offset %llu",
               path, (unsigned long long)cd_off, (unsigned long long)cd_size,
               (unsigned long long)n, (unsigned long long)cd_end);
    goto done;
  }
  cd = malloc(cd_size ? (size_t)cd_size : 1);
  z->e = calloc(n ? (size_t)n : 1, sizeof *z->e);
  z->sorted = malloc((n ? (size_t)n : 1) * sizeof *z->sorted);
  lh = malloc(30 + 65535);
  if (!cd || !z->e || !z->sorted || !lh) {
    rc = px_errf(err, errlen, PX_ERR_NOMEM, "%s: out of memory for the zip directory", path);
    goto done;
  }
  if (cd_size && px_file_pread(fd, cd, (size_t)cd_size, cd_off) != 0) {
    rc = px_errf(err, errlen, PX_ERR_IO, "%s: cannot read zip central directory at offset %llu",
               path, (unsigned long long)cd_off);
    goto done;
  }
  uint64_t pos = 0;
  for (uint64_t k = 0; k < n; k++) {
    uint64_t at = cd_off + pos;
    if (cd_size - pos < 46 || rd32(cd + pos) != 0x02014b50u) {
      rc = px_errf(err, errlen, PX_ERR_FORMAT, "%s: bad zip central directory record at offset %llu",
                 path, (unsigned long long)at);
      goto done;
    }
    const uint8_t *c = cd + pos;
    uint16_t flags = rd16(c + 8), method = rd16(c + 10);
    uint64_t csize = rd32(c + 20), usize = rd32(c + 24);
    uint32_t nlen = rd16(c + 28), xlen = rd16(c + 30), clen = rd16(c + 32);
    uint64_t dstart = rd16(c + 34), loff = rd32(c + 42);
    if (cd_size - pos - 46 < (uint64_t)nlen + xlen + clen) {
      rc = px_errf(err, errlen, PX_ERR_FORMAT,
                 "%s: zip central directory record at offset %llu runs past the directory", path,
                 (unsigned long long)at);
      goto done;
    }
    const uint8_t *nm = c + 46;
    int ctrl = 0;
    for (uint32_t q = 0; q < nlen; q++) ctrl |= nm[q] < 0x20 || nm[q] == 0x7f;
    if (nlen == 0 || ctrl) {
      rc = px_errf(err, errlen, PX_ERR_FORMAT, "%s: bad entry name in zip record at offset %llu",
                 path, (unsigned long long)at);
      goto done;
    }
    px_zip_entry *e = &z->e[k];
    e->name = malloc(nlen + 1);
    if (!e->name) {
      rc = px_errf(err, errlen, PX_ERR_NOMEM, "%s: out of memory", path);
      goto done;
    }
    memcpy(e->name, nm, nlen);
    e->name[nlen] = 0;
    z->n = (int)k + 1;
    /* zip64 extended information: the fields that are saturated, in this order. */
    const uint8_t *x = nm + nlen;
    uint32_t xp = 0;
    while (xlen - xp >= 4) {
      uint16_t id = rd16(x + xp), sz = rd16(x + xp + 2);
      if ((uint32_t)sz > xlen - xp - 4) {
        rc = px_errf(err, errlen, PX_ERR_FORMAT, "%s: entry %s: malformed extra field", path,
                   e->name);
        goto done;
      }
      if (id == 1) {
        const uint8_t *q = x + xp + 4;
        uint32_t left = sz;
        uint64_t *fields[3] = {&usize, &csize, &loff};
        for (int f = 0; f < 3; f++) {
          if (*fields[f] != 0xFFFFFFFFu) continue;
          if (left < 8) {
            rc = px_errf(err, errlen, PX_ERR_FORMAT, "%s: entry %s: short zip64 extra field", path,
                       e->name);
            goto done;
          }
          *fields[f] = rd64(q);
          q += 8;
          left -= 8;
        }
        if (dstart == 0xFFFF && left >= 4) dstart = rd32(q);
      }
      xp += 4u + sz;
    }
    if (flags & 1) {
      rc = px_errf(err, errlen, PX_ERR_FORMAT, "%s: entry %s is encrypted", path, e->name);
      goto done;
    }
    if (dstart != 0) {
      rc = px_errf(err, errlen, PX_ERR_FORMAT, "%s: entry %s lies on another disk", path, e->name);
      goto done;
    }
    if (loff > fsize || fsize - loff < 30 + (uint64_t)nlen) {
      rc = px_errf(err, errlen, PX_ERR_FORMAT,
                 "%s: entry %s: local header offset %llu is outside the file (%llu bytes)", path,
                 e->name, (unsigned long long)loff, (unsigned long long)fsize);
      goto done;
    }
    if (px_file_pread(fd, lh, 30 + nlen, loff) != 0) {
      rc = px_errf(err, errlen, PX_ERR_IO, "%s: cannot read local header at offset %llu", path,
                 (unsigned long long)loff);
      goto done;
    }
    if (rd32(lh) != 0x04034b50u || rd16(lh + 26) != nlen || memcmp(lh + 30, nm, nlen) != 0) {
      rc = px_errf(err, errlen, PX_ERR_FORMAT,
                 "%s: entry %s: local header at offset %llu does not match the central directory",
                 path, e->name, (unsigned long long)loff);
      goto done;
    }
    uint64_t data = loff + 30 + nlen + rd16(lh + 28);
    if (data > fsize || csize > fsize - data) {
      rc = px_errf(err, errlen, PX_ERR_FORMAT,
                 "%s: entry %s: %llu bytes at offset %llu run past the end of the file (%llu "
                 "bytes)",
                 path, e->name, (unsigned long long)csize, (unsigned long long)data,
                 (unsigned long long)fsize);
      goto done;
    }
    if (method == 0 && csize != usize) {
      rc = px_errf(err, errlen, PX_ERR_FORMAT,
                 "%s: stored entry %s has compressed size %llu != size %llu", path, e->name,
                 (unsigned long long)csize, (unsigned long long)usize);
      goto done;
    }
    e->method = method;
    e->size = usize;
    e->comp_size = csize;
    e->data_offset = data;
    pos += 46 + (uint64_t)nlen + xlen + clen;
  }
  {
    px_zip_entry **ptrs = malloc((z->n ? (size_t)z->n : 1) * sizeof *ptrs);
    if (!ptrs) {
      rc = px_errf(err, errlen, PX_ERR_NOMEM, "%s: out of memory", path);
      goto done;
    }
    for (int i = 0; i < z->n; i++) ptrs[i] = &z->e[i];
    qsort(ptrs, (size_t)z->n, sizeof *ptrs, cmp_entry_ptr);
    for (int i = 0; i < z->n; i++) z->sorted[i] = (int)(ptrs[i] - z->e);
    free(ptrs);
  }
  for (int i = 1; i < z->n; i++)
    if (strcmp(z->e[z->sorted[i]].name, z->e[z->sorted[i - 1]].name) == 0) {
      rc = px_errf(err, errlen, PX_ERR_FORMAT, "%s: zip archive holds entry %s twice", path,
                 z->e[z->sorted[i]].name);
      goto done;
    }
done:
  free(tail);
  free(cd);
  free(lh);
  if (rc) px_zip_close(z);
  return rc;
}
