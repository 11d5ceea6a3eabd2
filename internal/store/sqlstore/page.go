package sqlstore

import (
	"context"
	"fmt"
	"strconv"
)

// listPage runs query (a SELECT with its WHERE clause, if any, and
// nothing after) newest first by idCol, for one page of limit rows
// (clamped). It reads one row more to learn whether another page follows;
// if one does, next is the ID of the page's last row, the cursor of the
// next call. IDs sort by creation time, so the order is stable under
// inserts. what names the listing in errors.
func listPage[T any](ctx context.Context, db *DB, what, query, idCol string, args []any, limit int,
	scan func(rowScanner) (T, error), id func(*T) string) ([]T, string, error) {
	limit = clampLimit(limit)
	query += " ORDER BY " + idCol + " DESC LIMIT " + strconv.Itoa(limit+1)
	rows, err := db.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("sqlstore: list %s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, "", fmt.Errorf("sqlstore: list %s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("sqlstore: list %s: %w", what, err)
	}
	var next string
	if len(out) > limit {
		out = out[:limit]
		next = id(&out[limit-1])
	}
	return out, next, nil
}

// afterID is the WHERE clause and arguments of a page after the cursor
// after (none for the first page).
func afterID(idCol, after string) (string, []any) {
	if after == "" {
		return "", nil
	}
	return " WHERE " + idCol + " < $1", []any{after}
}
