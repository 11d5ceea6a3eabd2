package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jetonhq/jeton/internal/ids"
	"github.com/jetonhq/jeton/internal/store"
)

// NewestFirst checks that every listing ordered by ID follows creation
// time: tokens, clients and users newest first across pages, a user's
// grants newest first, APIs and signing keys oldest first. IDs sort by
// creation time only in byte order (their base62 mixes upper- and
// lower-case letters), so a backend must compare them byte by byte
// whatever its default collation. Run runs it; a backend whose collation
// can be chosen per database also runs it alone on one that does not sort
// in byte order.
func NewestFirst(t *testing.T, s store.Store) {
	// 120 objects of each kind, one a millisecond: IDs a few milliseconds
	// apart differ in a character that crosses from digits to upper case
	// to lower case several times, where a linguistic collation (which
	// puts "a" before "B") and byte order disagree.
	const n = 120
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Millisecond) }
	a := newAPI("acme")
	a.ID = ids.New(ids.API, base.Add(-time.Hour))
	if err := s.CreateAPI(ctx, a, ev("api.create", a.ID)); err != nil {
		t.Fatalf("CreateAPI: %v", err)
	}
	// The client and the user of the grants are the oldest of their kind.
	c := clientFixture("order", a.ID, -time.Hour)
	if err := s.CreateClient(ctx, c, nil, ev("client.create", c.ID)); err != nil {
		t.Fatalf("CreateClient: %v", err)
	}
	u := userFixture("order", -time.Hour)
	if err := s.CreateUser(ctx, u, ev("user.create", u.ID)); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	tokens, clients, users, apis := []string{}, []string{c.ID}, []string{u.ID}, []string{a.ID}
	var grants []string
	for i := range n {
		// (The grants' access tokens, made at the same times, have
		// another subject.)
		tok, _ := mustCreateToken(t, s, a.ID, func(tok *store.Token) { tok.ID = ids.New(ids.Token, at(i)) })
		tokens = append(tokens, tok.ID)

		cl := clientFixture(fmt.Sprintf("order%d", i), a.ID, time.Duration(i)*time.Millisecond)
		if err := s.CreateClient(ctx, cl, nil, ev("client.create", cl.ID)); err != nil {
			t.Fatalf("CreateClient: %v", err)
		}
		clients = append(clients, cl.ID)

		us := userFixture(fmt.Sprintf("order%d", i), time.Duration(i)*time.Millisecond)
		if err := s.CreateUser(ctx, us, ev("user.create", us.ID)); err != nil {
			t.Fatalf("CreateUser: %v", err)
		}
		users = append(users, us.ID)

		if i%10 == 0 {
			api := newAPI(fmt.Sprintf("order%d", i))
			api.ID = ids.New(ids.API, at(i))
			if err := s.CreateAPI(ctx, api, ev("api.create", api.ID)); err != nil {
				t.Fatalf("CreateAPI: %v", err)
			}
			apis = append(apis, api.ID)

			g := mustCreateUserGrantAt(t, s, u.ID, c, at(i))
			grants = append(grants, g.grant.ID)
		}
	}
	slices.Reverse(tokens)
	slices.Reverse(clients)
	slices.Reverse(users)
	slices.Reverse(grants)

	pages := func(what string, list func(after string) ([]string, string, error)) []string {
		var got []string
		after := ""
		for range 1000 {
			ids, next, err := list(after)
			if err != nil {
				t.Fatalf("list %s: %v", what, err)
			}
			got = append(got, ids...)
			if next == "" {
				return got
			}
			after = next
		}
		t.Fatalf("list %s: no last page", what)
		return nil
	}
	const limit = 7
	gotTokens := pages("tokens", func(after string) ([]string, string, error) {
		page, next, err := s.ListTokens(ctx, store.TokenFilter{APIID: a.ID, Subject: "cus_1", After: after, Limit: limit})
		return idsOf(page, func(x store.Token) string { return x.ID }), next, err
	})
	gotClients := pages("clients", func(after string) ([]string, string, error) {
		page, next, err := s.ListClients(ctx, after, limit)
		return idsOf(page, func(x store.Client) string { return x.ID }), next, err
	})
	gotUsers := pages("users", func(after string) ([]string, string, error) {
		page, next, err := s.ListUsers(ctx, after, limit)
		return idsOf(page, func(x store.User) string { return x.ID }), next, err
	})
	for _, l := range []struct {
		what      string
		got, want []string
	}{
		{"tokens", gotTokens, tokens},
		{"clients", gotClients, clients},
		{"users", gotUsers, users},
	} {
		if diff := cmp.Diff(l.got, l.want); diff != "" {
			t.Errorf("%s, newest first in pages of %d (-got +want):\n%s", l.what, limit, diff)
		}
	}

	gs, err := s.ListGrants(ctx, u.ID)
	if err != nil {
		t.Fatalf("ListGrants: %v", err)
	}
	if diff := cmp.Diff(idsOf(gs, func(x store.Grant) string { return x.ID }), grants); diff != "" {
		t.Errorf("grants of a user, newest first (-got +want):\n%s", diff)
	}
	as, err := s.ListAPIs(ctx)
	if err != nil {
		t.Fatalf("ListAPIs: %v", err)
	}
	if diff := cmp.Diff(idsOf(as, func(x store.API) string { return x.ID }), apis); diff != "" {
		t.Errorf("APIs, oldest first (-got +want):\n%s", diff)
	}
}

func idsOf[T any](xs []T, id func(T) string) []string {
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		out = append(out, id(x))
	}
	return out
}
