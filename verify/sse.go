package verify

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"time"
)

// Bounds of the event-stream parser.
const (
	maxSSELine = 64 << 10 // one line
	maxSSEData = 64 << 10 // the data of one event
)

// errSSELineTooLong reports an event-stream line or event over its bound.
var errSSELineTooLong = errors.New("event stream line too long")

// sseEvent is one dispatched server-sent event.
type sseEvent struct {
	ID   string // the last event ID buffer at dispatch
	Type string // "message" when the stream named none
	Data []byte // valid until the next call of next
}

// sseReader parses a text/event-stream as the WHATWG HTML standard's
// "Server-sent events" section (§9.2.6, interpreting an event stream)
// describes: lines end in CRLF, LF or CR; a leading U+FEFF is skipped; a
// line starting with ':' is a comment; "field: value" (one optional space
// after the colon); the fields data, event, id and retry; an empty line
// dispatches the event, unless its data is empty. Lines and event data are
// bounded.
type sseReader struct {
	r       *bufio.Reader
	started bool // the BOM check is done
	skipLF  bool // the previous line ended in CR: a following LF belongs to it
	line    []byte
	data    []byte
	evType  []byte
	lastID  string
	retry   time.Duration // the last valid retry field, 0 if none
	onLine  func()        // called after every line (the stream watchdog)
}

func newSSEReader(r io.Reader) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 4096)}
}

// readLine returns the next line without its terminator. At EOF, a
// partial last line is discarded: the standard dispatches nothing for an
// incomplete event.
func (p *sseReader) readLine() ([]byte, error) {
	p.line = p.line[:0]
	for {
		c, err := p.r.ReadByte()
		if err != nil {
			return nil, err
		}
		if p.skipLF {
			p.skipLF = false
			if c == '\n' {
				continue
			}
		}
		switch c {
		case '\r':
			p.skipLF = true
			return p.line, nil
		case '\n':
			return p.line, nil
		}
		if len(p.line) >= maxSSELine {
			return nil, errSSELineTooLong
		}
		p.line = append(p.line, c)
	}
}

// next returns the next dispatched event.
func (p *sseReader) next() (sseEvent, error) {
	for {
		line, err := p.readLine()
		if err != nil {
			return sseEvent{}, err
		}
		if p.onLine != nil {
			p.onLine()
		}
		if !p.started {
			p.started = true
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
		}
		if len(line) == 0 {
			if len(p.data) == 0 {
				p.evType = p.evType[:0]
				continue
			}
			ev := sseEvent{ID: p.lastID, Type: "message", Data: bytes.TrimSuffix(p.data, []byte("\n"))}
			if len(p.evType) > 0 {
				ev.Type = string(p.evType)
			}
			p.data = p.data[:0]
			p.evType = p.evType[:0]
			return ev, nil
		}
		if line[0] == ':' {
			continue // comment
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "event":
			p.evType = append(p.evType[:0], value...)
		case "data":
			if len(p.data)+len(value)+1 > maxSSEData {
				return sseEvent{}, errSSELineTooLong
			}
			p.data = append(p.data, value...)
			p.data = append(p.data, '\n')
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				p.lastID = string(value)
			}
		case "retry":
			if n, err := strconv.ParseUint(string(value), 10, 31); err == nil && allDigits(value) {
				p.retry = time.Duration(n) * time.Millisecond
			}
		}
		// Other fields are ignored.
	}
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}
