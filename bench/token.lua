-- wrk script for the token endpoint: POST a client_credentials request with HTTP Basic
-- client authentication. BASIC is base64("<client_id>:<client_secret>"), each part
-- form-urlencoded first (RFC 6749 §2.3.1).
wrk.method = "POST"
wrk.body = "grant_type=client_credentials&scope=all"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. assert(os.getenv("BASIC"), "set BASIC")
