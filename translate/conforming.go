package translate

import "strings"

// Strings holds the classifications of a text whose meaning depends on the
// session's standard_conforming_strings: it has a backslash in an ordinary
// string literal ('…', N'…'), which is an escape character there only when
// the setting is off. The parser here always reads text with it on.
type Strings struct {
	// On is the text classified as it is; Off as Postgres reads it with
	// the setting off (each such literal rewritten as an E'…' literal).
	On, Off Class
}

// Pick returns the classification for a session with the given setting.
func (s *Strings) Pick(conforming bool) Class {
	if conforming {
		return s.On
	}
	return s.Off
}

// ClassifyAs is Classify for a session whose standard_conforming_strings
// is known.
func ClassifyAs(sql string, conforming bool) Class {
	c := Classify(sql)
	if c.Stmt != nil && c.Stmt.Strings != nil {
		return c.Stmt.Strings.Pick(conforming)
	}
	return c
}

// byStrings is the Classify of a text that may write to a stripe table
// and whose ordinary literals have backslashes: when it reads differently
// with standard_conforming_strings off, and is not a plain pass-through
// either way, only the session can tell which reading Postgres makes, so
// both are kept.
func byStrings(sql string, on Class) Class {
	if on.Stmt != nil && on.Stmt.Transcode {
		return on // classified again once Postgres has converted the text
	}
	alt, changed := NonConforming(sql)
	if !changed {
		return on
	}
	off := classify(alt)
	if on.Action == Pass && off.Action == Pass {
		return on
	}
	return Class{Action: Write, Stmt: &Statement{SQL: sql, Strings: &Strings{On: on, Off: off}}}
}

// NonConforming rewrites sql so that a parser with
// standard_conforming_strings on reads it as Postgres does with the
// setting off, where an ordinary literal is an escape string literal:
// each ordinary literal with a backslash becomes E'…' (N'…' becomes
// NCHAR E'…', which is what Postgres's scanner makes of it). It reports
// whether anything changed; text that is not valid SQL is left to
// Postgres, unchanged from the point where it stops making sense.
func NonConforming(sql string) (string, bool) {
	var b strings.Builder
	last := 0 // sql[last:] is not yet copied to b
	changed := false
	n := len(sql)
	i := 0
	for i < n {
		c := sql[i]
		switch {
		case c == '-' && i+1 < n && sql[i+1] == '-':
			for i < n && sql[i] != '\n' && sql[i] != '\r' {
				i++
			}
		case c == '/' && i+1 < n && sql[i+1] == '*':
			depth := 0
			for i < n {
				if sql[i] == '/' && i+1 < n && sql[i+1] == '*' {
					depth++
					i += 2
				} else if sql[i] == '*' && i+1 < n && sql[i+1] == '/' {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
		case c == '"':
			i = skipQuoted(sql, i+1, '"')
		case c == '\'':
			end, bs := skipString(sql, i+1, true)
			if bs {
				b.WriteString(sql[last:i])
				if i > 0 && identCont(sql[i-1]) {
					b.WriteByte(' ') // text'…': keep the type name apart
				}
				b.WriteByte('E')
				last, changed = i, true
			}
			i = end
		case c == '$':
			i = skipDollar(sql, i)
		case c >= '0' && c <= '9':
			// A number, and no more: a letter after it starts a token of
			// its own (1e'…' is 1 then E'…', where Postgres accepts it).
			for i < n && (sql[i] >= '0' && sql[i] <= '9' || sql[i] == '.' || sql[i] == '_') {
				i++
			}
		case identStart(c):
			start := i
			for i < n && identCont(sql[i]) {
				i++
			}
			if i == n {
				break
			}
			if i-start != 1 {
				break
			}
			switch c | 0x20 {
			case 'e':
				if sql[i] == '\'' {
					i, _ = skipString(sql, i+1, true)
				}
			case 'b', 'x':
				if sql[i] == '\'' {
					i, _ = skipString(sql, i+1, false)
				}
			case 'n':
				if sql[i] == '\'' {
					end, bs := skipString(sql, i+1, true)
					if bs {
						b.WriteString(sql[last:start])
						b.WriteString("NCHAR E")
						last, changed = i, true
					}
					i = end
				}
			case 'u':
				if i+1 < n && sql[i] == '&' {
					switch sql[i+1] {
					case '\'':
						// An error in Postgres with the setting off;
						// read as the parser here reads it.
						i, _ = skipString(sql, i+2, false)
					case '"':
						i = skipQuoted(sql, i+2, '"')
					}
				}
			}
		default:
			i++
		}
	}
	if !changed {
		return sql, false
	}
	b.WriteString(sql[last:])
	return b.String(), true
}

func identStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}

func identCont(c byte) bool { return identStart(c) || c >= '0' && c <= '9' || c == '$' }

// skipQuoted returns the index after the quote q that closes a quoted
// identifier whose body starts at i (a doubled q is one character).
func skipQuoted(sql string, i int, q byte) int {
	for i < len(sql) {
		if sql[i] == q {
			if i+1 < len(sql) && sql[i+1] == q {
				i += 2
				continue
			}
			return i + 1
		}
		i++
	}
	return i
}

// skipString returns the index after a string literal whose body starts at
// i, following quote continuations ('a'<newline>'b' is one literal), and
// whether the body has a backslash. escapes: a backslash escapes the next
// character (E'…', or an ordinary literal with the setting off).
func skipString(sql string, i int, escapes bool) (int, bool) {
	bs := false
	n := len(sql)
	for i < n {
		switch sql[i] {
		case '\\':
			bs = true
			if escapes {
				i += 2
				continue
			}
			i++
		case '\'':
			if i+1 < n && sql[i+1] == '\'' {
				i += 2
				continue
			}
			if next, ok := continuation(sql, i+1); ok {
				i = next
				continue
			}
			return i + 1, bs
		default:
			i++
		}
	}
	return n, bs
}

// continuation reports whether the text at i, right after a closing quote,
// continues the literal (whitespace with a newline, then a quote, as
// Postgres's scanner defines it), and where its next segment starts.
func continuation(sql string, i int) (int, bool) {
	n := len(sql)
	comment := func(i int) int {
		for i < n && sql[i] != '\n' && sql[i] != '\r' {
			i++
		}
		return i
	}
	for i < n {
		if sql[i] == ' ' || sql[i] == '\t' || sql[i] == '\f' {
			i++
		} else if sql[i] == '-' && i+1 < n && sql[i+1] == '-' {
			i = comment(i)
		} else {
			break
		}
	}
	if i == n || sql[i] != '\n' && sql[i] != '\r' {
		return 0, false
	}
	i++
	for i < n {
		switch {
		case strings.IndexByte(" \t\n\r\f\v", sql[i]) >= 0:
			i++
		case sql[i] == '-' && i+1 < n && sql[i+1] == '-':
			i = comment(i)
			if i == n {
				return 0, false
			}
			i++
		case sql[i] == '\'':
			return i + 1, true
		default:
			return 0, false
		}
	}
	return 0, false
}

// skipDollar returns the index after a dollar-quoted string or parameter
// starting at i (a '$' that does not continue an identifier), or i+1.
func skipDollar(sql string, i int) int {
	n := len(sql)
	j := i + 1
	if j < n && sql[j] >= '0' && sql[j] <= '9' {
		for j < n && sql[j] >= '0' && sql[j] <= '9' {
			j++
		}
		return j
	}
	if j < n && identStart(sql[j]) {
		for j < n && identCont(sql[j]) && sql[j] != '$' {
			j++
		}
	}
	if j >= n || sql[j] != '$' {
		return i + 1
	}
	delim := sql[i : j+1]
	if k := strings.Index(sql[j+1:], delim); k >= 0 {
		return j + 1 + k + len(delim)
	}
	return n
}
