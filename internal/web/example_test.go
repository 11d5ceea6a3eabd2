package web_test

import (
	"crypto/rand"
	"log"
	"net/http"
	"time"

	"github.com/jetonhq/jeton/internal/web"
)

// Example shows a sign-in page and the pages behind it, as the OAuth
// handlers use them.
func Example() {
	var key [32]byte // in Jeton: masterKey.Derive("web session")
	rand.Read(key[:])
	pages, err := web.New(web.Config{SessionKey: key, Secure: true})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /static/", pages.Static())
	mux.Handle("/login", pages.Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			pages.Login(w, http.StatusOK, web.LoginPage{ReturnTo: "/device", CSRF: pages.CSRFToken(w, r)})
			return
		}
		if err := pages.CheckCSRF(r); err != nil {
			pages.Message(w, http.StatusForbidden, web.MessagePage{Title: "Request refused",
				Message: "The form could not be verified. Go back and try again."})
			return
		}
		if r.PostFormValue("password") != "correct horse" { // really: check the password hash
			pages.Login(w, http.StatusUnauthorized, web.LoginPage{ReturnTo: "/device", Username: r.PostFormValue("username"),
				Error: "Wrong username or password.", CSRF: pages.CSRFToken(w, r)})
			return
		}
		pages.StartSession(w, web.Session{UserID: "usr_123", AuthTime: time.Now()})
		http.Redirect(w, r, "/device", http.StatusSeeOther)
	})))
	mux.Handle("/device", pages.Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, ok := pages.Session(r)
		if !ok {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		pages.DeviceEntry(w, http.StatusOK, web.DeviceEntryPage{Username: sess.UserID, CSRF: pages.CSRFToken(w, r)})
	})))
	_ = http.ListenAndServe("localhost:8080", mux)
}
