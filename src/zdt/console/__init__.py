"""The zdt console: a web page and a JSON API over `zdt.app`, for one domain.

auth.py the token, the cookie and the CSRF token; api.py the handlers; server.py the
routes, the guard and the page; page.html, console.js and console.css the page itself
(plain HTML and a small script, no build step).
"""
