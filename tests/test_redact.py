from nli_cot_hub.redact import redact, secret_values


def test_every_secret_like_variable_is_masked():
    environ = {
        "MISTRAL_API_KEY": "mk-1234567890",
        "HF_TOKEN": "hf_abcdefghij",
        "MY_SERVICE_SECRET": "s3cr3t-value",
        "PATH": "/usr/bin:/bin",
        "HOME": "/root",
        "SHORT_KEY": "1",
    }
    text = "key mk-1234567890 token hf_abcdefghij other s3cr3t-value path /usr/bin:/bin 1"
    assert redact(text, environ) == "key *** token *** other *** path /usr/bin:/bin 1"
    assert "/root" not in secret_values(environ) and "1" not in secret_values(environ)


def test_a_secret_inside_a_longer_one_is_masked_whole():
    environ = {"OPENAI_API_KEY": "abcdefgh", "HF_TOKEN": "abcdefgh-and-more"}
    assert redact("x abcdefgh-and-more y", environ) == "x *** y"
    assert redact(None, environ) is None and redact("", environ) == ""
