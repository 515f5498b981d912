package mediaapi

import (
	"io"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/charset"
)

const (
	maxOGKeys     = 64
	maxOGValueLen = 1000 // bytes, cut at a rune boundary
)

// parseOpenGraph reads Open Graph metadata from an HTML document: every
// og:* meta tag (first occurrence wins), with <title> and the description
// meta tag as fallbacks for og:title and og:description. og:image is made
// absolute against base. The document is decoded from its declared or
// detected charset.
func parseOpenGraph(r io.Reader, contentType string, base *url.URL) map[string]any {
	if rd, err := charset.NewReader(r, contentType); err == nil {
		r = rd
	}
	og := map[string]any{}
	var title, description strings.Builder
	inTitle, haveTitle := false, false
	z := html.NewTokenizer(r)
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		switch tt {
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			switch string(name) {
			case "meta":
				if !hasAttr {
					continue
				}
				var prop, content string
				hasContent := false
				for {
					k, v, more := z.TagAttr()
					switch strings.ToLower(string(k)) {
					case "property", "name":
						if prop == "" {
							prop = strings.ToLower(strings.TrimSpace(string(v)))
						}
					case "content":
						content, hasContent = string(v), true
					}
					if !more {
						break
					}
				}
				if !hasContent {
					continue
				}
				if strings.HasPrefix(prop, "og:") && len(og) < maxOGKeys {
					if _, dup := og[prop]; !dup {
						og[prop] = clean(content)
					}
				}
				if prop == "description" && description.Len() == 0 {
					description.WriteString(content)
				}
			case "title":
				if tt == html.StartTagToken && !haveTitle {
					inTitle = true
				}
			}
		case html.TextToken:
			if inTitle && title.Len() < 4*maxOGValueLen {
				title.Write(z.Text())
			}
		case html.EndTagToken:
			if name, _ := z.TagName(); string(name) == "title" && inTitle {
				inTitle, haveTitle = false, true
			}
		}
	}
	if _, ok := og["og:title"]; !ok {
		if t := clean(title.String()); t != "" {
			og["og:title"] = t
		}
	}
	if _, ok := og["og:description"]; !ok {
		if d := clean(description.String()); d != "" {
			og["og:description"] = d
		}
	}
	if img, ok := og["og:image"].(string); ok {
		u, err := base.Parse(img)
		if err == nil && (u.Scheme == "http" || u.Scheme == "https") {
			u.Fragment = ""
			og["og:image"] = u.String()
		} else {
			delete(og, "og:image")
		}
	}
	for _, k := range []string{"og:image:width", "og:image:height"} {
		if v, ok := og[k].(string); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				og[k] = n
			} else {
				delete(og, k)
			}
		}
	}
	return og
}

// clean collapses whitespace and bounds the length of a metadata value.
func clean(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= maxOGValueLen {
		return s
	}
	cut := maxOGValueLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
