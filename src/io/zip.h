/* Reader for the zip archives torch.save writes: stored (uncompressed) entries,
 * zip64 end records and extra fields, data located through each local header. */
#ifndef PX_IO_ZIP_H
#define PX_IO_ZIP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  char *name;            /* NUL-terminated entry name */
  uint16_t method;       /* 0 = stored */
  uint64_t size;         /* uncompressed size */
  uint64_t comp_size;    /* bytes in the file */
  uint64_t data_offset;  /* absolute offset of the entry's bytes (checked: + comp_size <= file) */
} px_zip_entry;

typedef struct {
  int n;
  px_zip_entry *e;       /* in central-directory order */
  int *sorted;           /* indices sorted by name, for lookup */
} px_zip;

/* Index the archive in fd (file_size bytes); path is used in messages only.
 * Returns 0 or a px_status code with a one-line message in err. */
int px_zip_open(int fd, uint64_t file_size, const char *path, px_zip *z, char *err,
                size_t errlen);
void px_zip_close(px_zip *z);
/* Exact-name lookup; NULL if absent. */
const px_zip_entry *px_zip_find(const px_zip *z, const char *name);
/* 0 if e is stored, else PX_ERR_FORMAT with "entry X is compressed (method N); ..." */
int px_zip_check_stored(const px_zip_entry *e, const char *path, char *err, size_t errlen);

#endif
