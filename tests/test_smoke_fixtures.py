from __future__ import annotations

from tests.conftest import all_items, http_api_event


def test_handler_stores_one_open(lambda_handler, ddb, table):
    response = lambda_handler(http_api_event("user_id=u1&email_id=e1"), None)
    assert response["statusCode"] == 200
    assert response["isBase64Encoded"] is True
    items = all_items(ddb, table)
    assert [(i["email_id"], i["user_id"], i["ip"]) for i in items] == [("e1", "u1", "203.0.113.9")]
