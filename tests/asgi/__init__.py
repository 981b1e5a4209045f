"""What an app sees and what happens when it misbehaves: lifespan, framework apps, WSGI,
the 0.3 API, errors raised or protocol broken by the app, and what the server adds to responses.
"""
