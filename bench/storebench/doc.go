// Package storebench holds store-level benchmarks of the OAuth issuance
// paths of the load benchmark (bench/run.sh rows (e) and (h)): the same
// store calls the token endpoint makes, with 32 concurrent callers on a
// SQLite file with the production settings, without HTTP or wrk. They tell
// how much of a row's ceiling is the store's single writer.
//
//	go test -run '^$' -bench . -benchtime 5s ./bench/storebench/
package storebench
