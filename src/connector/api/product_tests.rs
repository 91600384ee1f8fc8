//! Product look-ups against a shop served in the test: Shopify's type and tags by product gid,
//! WooCommerce's category names, and "no such product" as None.

use super::*;
use crate::config::Secret;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn shopify_products_by_gid() {
    let app = axum::Router::new().route(
        "/graphql.json",
        post(|axum::Json(req): axum::Json<Value>| async move {
            assert!(req["query"].as_str().unwrap().contains("product(id: $id)"));
            let data = if req["variables"]["id"] == "gid://shopify/Product/42" {
                json!({ "product": { "productType": "Tea", "tags": ["cat-tea", "organic"] } })
            } else {
                json!({ "product": null })
            };
            axum::Json(json!({ "data": data }))
        }),
    );
    let base = serve(app).await;
    let api = ShopApi::Shopify {
        admin_url: format!("{base}/graphql.json"),
        access_token: Secret("t".into()),
    };
    let shop = Shopify::new(&api, Pacer::new(50)).unwrap();
    let found = shop.product("42").await.unwrap().unwrap();
    assert_eq!(found.product_type.as_deref(), Some("Tea"));
    assert_eq!(found.tags, ["cat-tea", "organic"]);
    assert_eq!(shop.product("43").await.unwrap(), None);
}

#[tokio::test]
async fn woocommerce_categories_and_404() {
    let app = axum::Router::new().route(
        "/wp-json/wc/v3/products/{id}",
        get(|Path(id): Path<String>| async move {
            if id == "7" {
                (
                    StatusCode::OK,
                    axum::Json(json!({ "id": 7, "categories": [{ "id": 1, "name": "Books" }, { "id": 2, "name": "Sale" }] })),
                )
            } else {
                (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({ "code": "woocommerce_rest_product_invalid_id", "message": "Invalid ID." })),
                )
            }
        }),
    );
    let base = serve(app).await;
    let api = ShopApi::WooCommerce {
        url: base,
        consumer_key: Secret("ck".into()),
        consumer_secret: Secret("cs".into()),
    };
    let shop = WooCommerce::new(&api, Pacer::new(50)).unwrap();
    let found = shop.product("7").await.unwrap().unwrap();
    assert_eq!(found.categories, ["Books", "Sale"]);
    assert_eq!(shop.product("8").await.unwrap(), None);
    assert_eq!(shop.product("x/../1").await.unwrap(), None);
}
