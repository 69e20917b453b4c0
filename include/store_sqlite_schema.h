/* store_sqlite_schema.h - the SQLite store's schema and its migrations. */
#ifndef BYOK_STORE_SQLITE_SCHEMA_H
#define BYOK_STORE_SQLITE_SCHEMA_H

#include "common.h"

#include <sqlite3.h>

/* Brings the schema of db (opened on path, named in errors) up to the latest
 * version. Safe when several threads or processes open the same file at
 * once. -1 with *err set (malloc'ed, may be NULL when out of memory) on
 * failure, also when the file is newer than this build. */
MUST_CHECK int store_sqlite_migrate(sqlite3 *db, const char *path, char **err);

#endif
