"""Train random forests and publish them to a lambda-forest model store."""
