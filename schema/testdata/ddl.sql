CREATE TABLE "stripe"."customers" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('customers', NULL::text),
    "address" jsonb,
    "balance" bigint,
    "cash_balance" jsonb,
    "created" timestamptz,
    "currency" text,
    "default_source" text,
    "delinquent" boolean,
    "description" text,
    "discount" jsonb,
    "email" text,
    "invoice_credit_balance" jsonb,
    "invoice_prefix" text,
    "invoice_settings" jsonb,
    "livemode" boolean,
    "metadata" jsonb,
    "name" text,
    "next_invoice_sequence" bigint,
    "object" text,
    "phone" text,
    "preferred_locales" jsonb,
    "shipping" jsonb,
    "sources" jsonb,
    "subscriptions" jsonb,
    "tax" jsonb,
    "tax_exempt" text,
    "tax_ids" jsonb,
    "test_clock" text,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('customers', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('customers', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('customers', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."customers" IS 'pgstripe: Stripe customer objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "customers_created_idx" ON "stripe"."customers" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."customers" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."products" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('products', NULL::text),
    "active" boolean,
    "created" timestamptz,
    "default_price" text,
    "description" text,
    "features" jsonb,
    "images" jsonb,
    "livemode" boolean,
    "metadata" jsonb,
    "name" text,
    "object" text,
    "package_dimensions" jsonb,
    "shippable" boolean,
    "statement_descriptor" text,
    "tax_code" text,
    "unit_label" text,
    "updated" timestamptz,
    "url" text,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('products', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('products', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('products', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."products" IS 'pgstripe: Stripe product objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "products_created_idx" ON "stripe"."products" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."products" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."prices" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('prices', NULL::text),
    "active" boolean,
    "billing_scheme" text,
    "created" timestamptz,
    "currency" text,
    "currency_options" jsonb,
    "custom_unit_amount" jsonb,
    "livemode" boolean,
    "lookup_key" text,
    "metadata" jsonb,
    "nickname" text,
    "object" text,
    "product" text,
    "recurring" jsonb,
    "tax_behavior" text,
    "tiers" jsonb,
    "tiers_mode" text,
    "transform_quantity" jsonb,
    "type" text,
    "unit_amount" bigint,
    "unit_amount_decimal" text,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('prices', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('prices', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('prices', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."prices" IS 'pgstripe: Stripe price objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "prices_product_idx" ON "stripe"."prices" ("product");
CREATE INDEX IF NOT EXISTS "prices_created_idx" ON "stripe"."prices" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."prices" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."plans" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('plans', NULL::text),
    "active" boolean,
    "aggregate_usage" text,
    "amount" bigint,
    "amount_decimal" text,
    "billing_scheme" text,
    "created" timestamptz,
    "currency" text,
    "interval" text,
    "interval_count" bigint,
    "livemode" boolean,
    "metadata" jsonb,
    "nickname" text,
    "object" text,
    "product" text,
    "tiers" jsonb,
    "tiers_mode" text,
    "transform_usage" jsonb,
    "trial_period_days" bigint,
    "usage_type" text,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('plans', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('plans', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('plans', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."plans" IS 'pgstripe: Stripe plan objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "plans_product_idx" ON "stripe"."plans" ("product");
CREATE INDEX IF NOT EXISTS "plans_created_idx" ON "stripe"."plans" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."plans" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."coupons" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('coupons', NULL::text),
    "amount_off" bigint,
    "applies_to" jsonb,
    "created" timestamptz,
    "currency" text,
    "currency_options" jsonb,
    "duration" text,
    "duration_in_months" bigint,
    "livemode" boolean,
    "max_redemptions" bigint,
    "metadata" jsonb,
    "name" text,
    "object" text,
    "percent_off" numeric,
    "redeem_by" timestamptz,
    "times_redeemed" bigint,
    "valid" boolean,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('coupons', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('coupons', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('coupons', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."coupons" IS 'pgstripe: Stripe coupon objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "coupons_created_idx" ON "stripe"."coupons" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."coupons" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."promotion_codes" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('promotion_codes', NULL::text),
    "active" boolean,
    "code" text,
    "coupon" jsonb,
    "created" timestamptz,
    "customer" text,
    "expires_at" timestamptz,
    "livemode" boolean,
    "max_redemptions" bigint,
    "metadata" jsonb,
    "object" text,
    "restrictions" jsonb,
    "times_redeemed" bigint,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('promotion_codes', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('promotion_codes', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('promotion_codes', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."promotion_codes" IS 'pgstripe: Stripe promotion_code objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "promotion_codes_customer_idx" ON "stripe"."promotion_codes" ("customer");
CREATE INDEX IF NOT EXISTS "promotion_codes_created_idx" ON "stripe"."promotion_codes" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."promotion_codes" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."tax_rates" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('tax_rates', NULL::text),
    "active" boolean,
    "country" text,
    "created" timestamptz,
    "description" text,
    "display_name" text,
    "effective_percentage" numeric,
    "inclusive" boolean,
    "jurisdiction" text,
    "jurisdiction_level" text,
    "livemode" boolean,
    "metadata" jsonb,
    "object" text,
    "percentage" numeric,
    "state" text,
    "tax_type" text,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('tax_rates', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('tax_rates', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('tax_rates', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."tax_rates" IS 'pgstripe: Stripe tax_rate objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "tax_rates_created_idx" ON "stripe"."tax_rates" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."tax_rates" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."subscriptions" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('subscriptions', NULL::text),
    "application" text,
    "application_fee_percent" numeric,
    "automatic_tax" jsonb,
    "billing_cycle_anchor" timestamptz,
    "billing_cycle_anchor_config" jsonb,
    "billing_thresholds" jsonb,
    "cancel_at" timestamptz,
    "cancel_at_period_end" boolean,
    "canceled_at" timestamptz,
    "cancellation_details" jsonb,
    "collection_method" text,
    "created" timestamptz,
    "currency" text,
    "current_period_end" timestamptz,
    "current_period_start" timestamptz,
    "customer" text,
    "days_until_due" bigint,
    "default_payment_method" text,
    "default_source" text,
    "default_tax_rates" jsonb,
    "description" text,
    "discount" jsonb,
    "ended_at" timestamptz,
    "items" jsonb,
    "latest_invoice" text,
    "livemode" boolean,
    "metadata" jsonb,
    "next_pending_invoice_item_invoice" timestamptz,
    "object" text,
    "on_behalf_of" text,
    "pause_collection" jsonb,
    "payment_settings" jsonb,
    "pending_invoice_item_interval" jsonb,
    "pending_setup_intent" text,
    "pending_update" jsonb,
    "schedule" text,
    "start_date" timestamptz,
    "status" text,
    "test_clock" text,
    "transfer_data" jsonb,
    "trial_end" timestamptz,
    "trial_settings" jsonb,
    "trial_start" timestamptz,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('subscriptions', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('subscriptions', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('subscriptions', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."subscriptions" IS 'pgstripe: Stripe subscription objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "subscriptions_customer_idx" ON "stripe"."subscriptions" ("customer");
CREATE INDEX IF NOT EXISTS "subscriptions_created_idx" ON "stripe"."subscriptions" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."subscriptions" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."subscription_items" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('subscription_items', NULL::text),
    "billing_thresholds" jsonb,
    "created" timestamptz,
    "metadata" jsonb,
    "object" text,
    "price" jsonb,
    "quantity" bigint,
    "subscription" text,
    "tax_rates" jsonb,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('subscription_items', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('subscription_items', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('subscription_items', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."subscription_items" IS 'pgstripe: Stripe subscription_item objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "subscription_items_subscription_idx" ON "stripe"."subscription_items" ("subscription");
CREATE INDEX IF NOT EXISTS "subscription_items_price_idx" ON "stripe"."subscription_items" (("price" ->> 'id'));
CREATE INDEX IF NOT EXISTS "subscription_items_created_idx" ON "stripe"."subscription_items" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."subscription_items" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."subscription_schedules" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('subscription_schedules', NULL::text),
    "application" text,
    "canceled_at" timestamptz,
    "completed_at" timestamptz,
    "created" timestamptz,
    "current_phase" jsonb,
    "customer" text,
    "default_settings" jsonb,
    "end_behavior" text,
    "livemode" boolean,
    "metadata" jsonb,
    "object" text,
    "phases" jsonb,
    "released_at" timestamptz,
    "released_subscription" text,
    "status" text,
    "subscription" text,
    "test_clock" text,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('subscription_schedules', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('subscription_schedules', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('subscription_schedules', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."subscription_schedules" IS 'pgstripe: Stripe subscription_schedule objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "subscription_schedules_customer_idx" ON "stripe"."subscription_schedules" ("customer");
CREATE INDEX IF NOT EXISTS "subscription_schedules_subscription_idx" ON "stripe"."subscription_schedules" ("subscription");
CREATE INDEX IF NOT EXISTS "subscription_schedules_created_idx" ON "stripe"."subscription_schedules" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."subscription_schedules" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."invoices" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('invoices', NULL::text),
    "account_country" text,
    "account_name" text,
    "account_tax_ids" jsonb,
    "amount_due" bigint,
    "amount_paid" bigint,
    "amount_remaining" bigint,
    "amount_shipping" bigint,
    "application" text,
    "application_fee_amount" bigint,
    "attempt_count" bigint,
    "attempted" boolean,
    "auto_advance" boolean,
    "automatic_tax" jsonb,
    "billing_reason" text,
    "charge" text,
    "collection_method" text,
    "created" timestamptz,
    "currency" text,
    "custom_fields" jsonb,
    "customer" text,
    "customer_address" jsonb,
    "customer_email" text,
    "customer_name" text,
    "customer_phone" text,
    "customer_shipping" jsonb,
    "customer_tax_exempt" text,
    "customer_tax_ids" jsonb,
    "default_payment_method" text,
    "default_source" text,
    "default_tax_rates" jsonb,
    "description" text,
    "discount" jsonb,
    "discounts" jsonb,
    "due_date" timestamptz,
    "effective_at" timestamptz,
    "ending_balance" bigint,
    "footer" text,
    "from_invoice" jsonb,
    "hosted_invoice_url" text,
    "invoice_pdf" text,
    "issuer" jsonb,
    "last_finalization_error" jsonb,
    "latest_revision" text,
    "lines" jsonb,
    "livemode" boolean,
    "metadata" jsonb,
    "next_payment_attempt" timestamptz,
    "number" text,
    "object" text,
    "on_behalf_of" text,
    "paid" boolean,
    "paid_out_of_band" boolean,
    "payment_intent" text,
    "payment_settings" jsonb,
    "period_end" timestamptz,
    "period_start" timestamptz,
    "post_payment_credit_notes_amount" bigint,
    "pre_payment_credit_notes_amount" bigint,
    "quote" text,
    "receipt_number" text,
    "rendering" jsonb,
    "shipping_cost" jsonb,
    "shipping_details" jsonb,
    "starting_balance" bigint,
    "statement_descriptor" text,
    "status" text,
    "status_transitions" jsonb,
    "subscription" text,
    "subscription_details" jsonb,
    "subscription_proration_date" bigint,
    "subtotal" bigint,
    "subtotal_excluding_tax" bigint,
    "tax" bigint,
    "test_clock" text,
    "threshold_reason" jsonb,
    "total" bigint,
    "total_discount_amounts" jsonb,
    "total_excluding_tax" bigint,
    "total_tax_amounts" jsonb,
    "transfer_data" jsonb,
    "webhooks_delivered_at" timestamptz,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('invoices', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('invoices', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('invoices', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."invoices" IS 'pgstripe: Stripe invoice objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "invoices_customer_idx" ON "stripe"."invoices" ("customer");
CREATE INDEX IF NOT EXISTS "invoices_subscription_idx" ON "stripe"."invoices" ("subscription");
CREATE INDEX IF NOT EXISTS "invoices_charge_idx" ON "stripe"."invoices" ("charge");
CREATE INDEX IF NOT EXISTS "invoices_payment_intent_idx" ON "stripe"."invoices" ("payment_intent");
CREATE INDEX IF NOT EXISTS "invoices_created_idx" ON "stripe"."invoices" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."invoices" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."invoice_line_items" (
    "invoice" text NOT NULL,
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('invoice_line_items', NULL::text),
    "amount" bigint,
    "amount_excluding_tax" bigint,
    "currency" text,
    "description" text,
    "discount_amounts" jsonb,
    "discountable" boolean,
    "discounts" jsonb,
    "invoice_item" text,
    "livemode" boolean,
    "metadata" jsonb,
    "object" text,
    "period" jsonb,
    "price" jsonb,
    "proration" boolean,
    "proration_details" jsonb,
    "quantity" bigint,
    "subscription" text,
    "subscription_item" text,
    "tax_amounts" jsonb,
    "tax_rates" jsonb,
    "type" text,
    "unit_amount_excluding_tax" text,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('invoice_line_items', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('invoice_line_items', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('invoice_line_items', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("invoice", "id")
);
COMMENT ON TABLE "stripe"."invoice_line_items" IS 'pgstripe: Stripe line_item objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "invoice_line_items_subscription_idx" ON "stripe"."invoice_line_items" ("subscription");
CREATE INDEX IF NOT EXISTS "invoice_line_items_price_idx" ON "stripe"."invoice_line_items" (("price" ->> 'id'));
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."invoice_line_items" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."invoiceitems" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('invoiceitems', NULL::text),
    "amount" bigint,
    "currency" text,
    "customer" text,
    "date" timestamptz,
    "description" text,
    "discountable" boolean,
    "discounts" jsonb,
    "invoice" text,
    "livemode" boolean,
    "metadata" jsonb,
    "object" text,
    "period" jsonb,
    "price" jsonb,
    "proration" boolean,
    "quantity" bigint,
    "subscription" text,
    "subscription_item" text,
    "tax_rates" jsonb,
    "test_clock" text,
    "unit_amount" bigint,
    "unit_amount_decimal" text,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('invoiceitems', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('invoiceitems', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('invoiceitems', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."invoiceitems" IS 'pgstripe: Stripe invoiceitem objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "invoiceitems_customer_idx" ON "stripe"."invoiceitems" ("customer");
CREATE INDEX IF NOT EXISTS "invoiceitems_subscription_idx" ON "stripe"."invoiceitems" ("subscription");
CREATE INDEX IF NOT EXISTS "invoiceitems_invoice_idx" ON "stripe"."invoiceitems" ("invoice");
CREATE INDEX IF NOT EXISTS "invoiceitems_price_idx" ON "stripe"."invoiceitems" (("price" ->> 'id'));
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."invoiceitems" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."credit_notes" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('credit_notes', NULL::text),
    "amount" bigint,
    "amount_shipping" bigint,
    "created" timestamptz,
    "currency" text,
    "customer" text,
    "customer_balance_transaction" text,
    "discount_amount" bigint,
    "discount_amounts" jsonb,
    "effective_at" timestamptz,
    "invoice" text,
    "lines" jsonb,
    "livemode" boolean,
    "memo" text,
    "metadata" jsonb,
    "number" text,
    "object" text,
    "out_of_band_amount" bigint,
    "pdf" text,
    "reason" text,
    "refund" text,
    "shipping_cost" jsonb,
    "status" text,
    "subtotal" bigint,
    "subtotal_excluding_tax" bigint,
    "tax_amounts" jsonb,
    "total" bigint,
    "total_excluding_tax" bigint,
    "type" text,
    "voided_at" timestamptz,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('credit_notes', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('credit_notes', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('credit_notes', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."credit_notes" IS 'pgstripe: Stripe credit_note objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "credit_notes_customer_idx" ON "stripe"."credit_notes" ("customer");
CREATE INDEX IF NOT EXISTS "credit_notes_invoice_idx" ON "stripe"."credit_notes" ("invoice");
CREATE INDEX IF NOT EXISTS "credit_notes_created_idx" ON "stripe"."credit_notes" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."credit_notes" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."payment_intents" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('payment_intents', NULL::text),
    "amount" bigint,
    "amount_capturable" bigint,
    "amount_details" jsonb,
    "amount_received" bigint,
    "application" text,
    "application_fee_amount" bigint,
    "automatic_payment_methods" jsonb,
    "canceled_at" timestamptz,
    "cancellation_reason" text,
    "capture_method" text,
    "client_secret" text,
    "confirmation_method" text,
    "created" timestamptz,
    "currency" text,
    "customer" text,
    "description" text,
    "invoice" text,
    "last_payment_error" jsonb,
    "latest_charge" text,
    "livemode" boolean,
    "metadata" jsonb,
    "next_action" jsonb,
    "object" text,
    "on_behalf_of" text,
    "payment_method" text,
    "payment_method_configuration_details" jsonb,
    "payment_method_options" jsonb,
    "payment_method_types" jsonb,
    "processing" jsonb,
    "receipt_email" text,
    "review" text,
    "setup_future_usage" text,
    "shipping" jsonb,
    "statement_descriptor" text,
    "statement_descriptor_suffix" text,
    "status" text,
    "transfer_data" jsonb,
    "transfer_group" text,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('payment_intents', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('payment_intents', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('payment_intents', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."payment_intents" IS 'pgstripe: Stripe payment_intent objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "payment_intents_customer_idx" ON "stripe"."payment_intents" ("customer");
CREATE INDEX IF NOT EXISTS "payment_intents_invoice_idx" ON "stripe"."payment_intents" ("invoice");
CREATE INDEX IF NOT EXISTS "payment_intents_created_idx" ON "stripe"."payment_intents" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."payment_intents" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."setup_intents" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('setup_intents', NULL::text),
    "application" text,
    "attach_to_self" boolean,
    "automatic_payment_methods" jsonb,
    "cancellation_reason" text,
    "client_secret" text,
    "created" timestamptz,
    "customer" text,
    "description" text,
    "flow_directions" jsonb,
    "last_setup_error" jsonb,
    "latest_attempt" text,
    "livemode" boolean,
    "mandate" text,
    "metadata" jsonb,
    "next_action" jsonb,
    "object" text,
    "on_behalf_of" text,
    "payment_method" text,
    "payment_method_configuration_details" jsonb,
    "payment_method_options" jsonb,
    "payment_method_types" jsonb,
    "single_use_mandate" text,
    "status" text,
    "usage" text,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('setup_intents', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('setup_intents', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('setup_intents', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."setup_intents" IS 'pgstripe: Stripe setup_intent objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "setup_intents_customer_idx" ON "stripe"."setup_intents" ("customer");
CREATE INDEX IF NOT EXISTS "setup_intents_created_idx" ON "stripe"."setup_intents" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."setup_intents" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."payment_methods" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('payment_methods', NULL::text),
    "acss_debit" jsonb,
    "affirm" jsonb,
    "afterpay_clearpay" jsonb,
    "alipay" jsonb,
    "au_becs_debit" jsonb,
    "bacs_debit" jsonb,
    "bancontact" jsonb,
    "billing_details" jsonb,
    "blik" jsonb,
    "boleto" jsonb,
    "card" jsonb,
    "card_present" jsonb,
    "cashapp" jsonb,
    "created" timestamptz,
    "customer" text,
    "customer_balance" jsonb,
    "eps" jsonb,
    "fpx" jsonb,
    "giropay" jsonb,
    "grabpay" jsonb,
    "ideal" jsonb,
    "interac_present" jsonb,
    "klarna" jsonb,
    "konbini" jsonb,
    "link" jsonb,
    "livemode" boolean,
    "metadata" jsonb,
    "object" text,
    "oxxo" jsonb,
    "p24" jsonb,
    "paynow" jsonb,
    "paypal" jsonb,
    "pix" jsonb,
    "promptpay" jsonb,
    "radar_options" jsonb,
    "revolut_pay" jsonb,
    "sepa_debit" jsonb,
    "sofort" jsonb,
    "swish" jsonb,
    "type" text,
    "us_bank_account" jsonb,
    "wechat_pay" jsonb,
    "zip" jsonb,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('payment_methods', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('payment_methods', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('payment_methods', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."payment_methods" IS 'pgstripe: Stripe payment_method objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "payment_methods_customer_idx" ON "stripe"."payment_methods" ("customer");
CREATE INDEX IF NOT EXISTS "payment_methods_created_idx" ON "stripe"."payment_methods" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."payment_methods" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."charges" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('charges', NULL::text),
    "amount" bigint,
    "amount_captured" bigint,
    "amount_refunded" bigint,
    "application" text,
    "application_fee" text,
    "application_fee_amount" bigint,
    "balance_transaction" text,
    "billing_details" jsonb,
    "calculated_statement_descriptor" text,
    "captured" boolean,
    "created" timestamptz,
    "currency" text,
    "customer" text,
    "description" text,
    "disputed" boolean,
    "failure_balance_transaction" text,
    "failure_code" text,
    "failure_message" text,
    "fraud_details" jsonb,
    "invoice" text,
    "livemode" boolean,
    "metadata" jsonb,
    "object" text,
    "on_behalf_of" text,
    "outcome" jsonb,
    "paid" boolean,
    "payment_intent" text,
    "payment_method" text,
    "payment_method_details" jsonb,
    "radar_options" jsonb,
    "receipt_email" text,
    "receipt_number" text,
    "receipt_url" text,
    "refunded" boolean,
    "refunds" jsonb,
    "review" text,
    "shipping" jsonb,
    "source_transfer" text,
    "statement_descriptor" text,
    "statement_descriptor_suffix" text,
    "status" text,
    "transfer" text,
    "transfer_data" jsonb,
    "transfer_group" text,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('charges', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('charges', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('charges', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."charges" IS 'pgstripe: Stripe charge objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "charges_customer_idx" ON "stripe"."charges" ("customer");
CREATE INDEX IF NOT EXISTS "charges_invoice_idx" ON "stripe"."charges" ("invoice");
CREATE INDEX IF NOT EXISTS "charges_payment_intent_idx" ON "stripe"."charges" ("payment_intent");
CREATE INDEX IF NOT EXISTS "charges_created_idx" ON "stripe"."charges" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."charges" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."refunds" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('refunds', NULL::text),
    "amount" bigint,
    "balance_transaction" text,
    "charge" text,
    "created" timestamptz,
    "currency" text,
    "description" text,
    "destination_details" jsonb,
    "failure_balance_transaction" text,
    "failure_reason" text,
    "instructions_email" text,
    "metadata" jsonb,
    "next_action" jsonb,
    "object" text,
    "payment_intent" text,
    "reason" text,
    "receipt_number" text,
    "source_transfer_reversal" text,
    "status" text,
    "transfer_reversal" text,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('refunds', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('refunds', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('refunds', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."refunds" IS 'pgstripe: Stripe refund objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "refunds_charge_idx" ON "stripe"."refunds" ("charge");
CREATE INDEX IF NOT EXISTS "refunds_payment_intent_idx" ON "stripe"."refunds" ("payment_intent");
CREATE INDEX IF NOT EXISTS "refunds_created_idx" ON "stripe"."refunds" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."refunds" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."disputes" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('disputes', NULL::text),
    "amount" bigint,
    "balance_transactions" jsonb,
    "charge" text,
    "created" timestamptz,
    "currency" text,
    "evidence" jsonb,
    "evidence_details" jsonb,
    "is_charge_refundable" boolean,
    "livemode" boolean,
    "metadata" jsonb,
    "object" text,
    "payment_intent" text,
    "payment_method_details" jsonb,
    "reason" text,
    "status" text,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('disputes', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('disputes', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('disputes', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."disputes" IS 'pgstripe: Stripe dispute objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "disputes_charge_idx" ON "stripe"."disputes" ("charge");
CREATE INDEX IF NOT EXISTS "disputes_payment_intent_idx" ON "stripe"."disputes" ("payment_intent");
CREATE INDEX IF NOT EXISTS "disputes_created_idx" ON "stripe"."disputes" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."disputes" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."payouts" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('payouts', NULL::text),
    "amount" bigint,
    "arrival_date" timestamptz,
    "automatic" boolean,
    "balance_transaction" text,
    "created" timestamptz,
    "currency" text,
    "description" text,
    "destination" text,
    "failure_balance_transaction" text,
    "failure_code" text,
    "failure_message" text,
    "livemode" boolean,
    "metadata" jsonb,
    "method" text,
    "object" text,
    "original_payout" text,
    "reconciliation_status" text,
    "reversed_by" text,
    "source_type" text,
    "statement_descriptor" text,
    "status" text,
    "type" text,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('payouts', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('payouts', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('payouts', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."payouts" IS 'pgstripe: Stripe payout objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "payouts_created_idx" ON "stripe"."payouts" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."payouts" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."balance_transactions" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('balance_transactions', NULL::text),
    "amount" bigint,
    "available_on" timestamptz,
    "created" timestamptz,
    "currency" text,
    "description" text,
    "exchange_rate" numeric,
    "fee" bigint,
    "fee_details" jsonb,
    "net" bigint,
    "object" text,
    "reporting_category" text,
    "source" text,
    "status" text,
    "type" text,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('balance_transactions', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('balance_transactions', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('balance_transactions', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."balance_transactions" IS 'pgstripe: Stripe balance_transaction objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "balance_transactions_created_idx" ON "stripe"."balance_transactions" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."balance_transactions" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."checkout_sessions" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('checkout_sessions', NULL::text),
    "after_expiration" jsonb,
    "allow_promotion_codes" boolean,
    "amount_subtotal" bigint,
    "amount_total" bigint,
    "automatic_tax" jsonb,
    "billing_address_collection" text,
    "cancel_url" text,
    "client_reference_id" text,
    "client_secret" text,
    "consent" jsonb,
    "consent_collection" jsonb,
    "created" timestamptz,
    "currency" text,
    "currency_conversion" jsonb,
    "custom_fields" jsonb,
    "custom_text" jsonb,
    "customer" text,
    "customer_creation" text,
    "customer_details" jsonb,
    "customer_email" text,
    "expires_at" timestamptz,
    "invoice" text,
    "invoice_creation" jsonb,
    "line_items" jsonb,
    "livemode" boolean,
    "locale" text,
    "metadata" jsonb,
    "mode" text,
    "object" text,
    "payment_intent" text,
    "payment_link" text,
    "payment_method_collection" text,
    "payment_method_configuration_details" jsonb,
    "payment_method_options" jsonb,
    "payment_method_types" jsonb,
    "payment_status" text,
    "phone_number_collection" jsonb,
    "recovered_from" text,
    "redirect_on_completion" text,
    "return_url" text,
    "setup_intent" text,
    "shipping_address_collection" jsonb,
    "shipping_cost" jsonb,
    "shipping_details" jsonb,
    "shipping_options" jsonb,
    "status" text,
    "submit_type" text,
    "subscription" text,
    "success_url" text,
    "tax_id_collection" jsonb,
    "total_details" jsonb,
    "ui_mode" text,
    "url" text,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('checkout_sessions', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('checkout_sessions', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('checkout_sessions', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."checkout_sessions" IS 'pgstripe: Stripe checkout.session objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "checkout_sessions_customer_idx" ON "stripe"."checkout_sessions" ("customer");
CREATE INDEX IF NOT EXISTS "checkout_sessions_subscription_idx" ON "stripe"."checkout_sessions" ("subscription");
CREATE INDEX IF NOT EXISTS "checkout_sessions_invoice_idx" ON "stripe"."checkout_sessions" ("invoice");
CREATE INDEX IF NOT EXISTS "checkout_sessions_payment_intent_idx" ON "stripe"."checkout_sessions" ("payment_intent");
CREATE INDEX IF NOT EXISTS "checkout_sessions_created_idx" ON "stripe"."checkout_sessions" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."checkout_sessions" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."tax_ids" (
    "id" text NOT NULL DEFAULT stripe._set_by_stripe('tax_ids', NULL::text),
    "country" text,
    "created" timestamptz,
    "customer" text,
    "livemode" boolean,
    "object" text,
    "owner" jsonb,
    "type" text,
    "value" text,
    "verification" jsonb,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('tax_ids', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('tax_ids', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('tax_ids', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("id")
);
COMMENT ON TABLE "stripe"."tax_ids" IS 'pgstripe: Stripe tax_id objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "tax_ids_customer_idx" ON "stripe"."tax_ids" ("customer");
CREATE INDEX IF NOT EXISTS "tax_ids_created_idx" ON "stripe"."tax_ids" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."tax_ids" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();

CREATE TABLE "stripe"."upcoming_invoices" (
    "customer" text NOT NULL,
    "account_country" text,
    "account_name" text,
    "account_tax_ids" jsonb,
    "amount_due" bigint,
    "amount_paid" bigint,
    "amount_remaining" bigint,
    "amount_shipping" bigint,
    "application" text,
    "application_fee_amount" bigint,
    "attempt_count" bigint,
    "attempted" boolean,
    "auto_advance" boolean,
    "automatic_tax" jsonb,
    "billing_reason" text,
    "charge" text,
    "collection_method" text,
    "created" timestamptz,
    "currency" text,
    "custom_fields" jsonb,
    "customer_address" jsonb,
    "customer_email" text,
    "customer_name" text,
    "customer_phone" text,
    "customer_shipping" jsonb,
    "customer_tax_exempt" text,
    "customer_tax_ids" jsonb,
    "default_payment_method" text,
    "default_source" text,
    "default_tax_rates" jsonb,
    "description" text,
    "discount" jsonb,
    "discounts" jsonb,
    "due_date" timestamptz,
    "effective_at" timestamptz,
    "ending_balance" bigint,
    "footer" text,
    "from_invoice" jsonb,
    "hosted_invoice_url" text,
    "id" text,
    "invoice_pdf" text,
    "issuer" jsonb,
    "last_finalization_error" jsonb,
    "latest_revision" text,
    "lines" jsonb,
    "livemode" boolean,
    "metadata" jsonb,
    "next_payment_attempt" timestamptz,
    "number" text,
    "object" text,
    "on_behalf_of" text,
    "paid" boolean,
    "paid_out_of_band" boolean,
    "payment_intent" text,
    "payment_settings" jsonb,
    "period_end" timestamptz,
    "period_start" timestamptz,
    "post_payment_credit_notes_amount" bigint,
    "pre_payment_credit_notes_amount" bigint,
    "quote" text,
    "receipt_number" text,
    "rendering" jsonb,
    "shipping_cost" jsonb,
    "shipping_details" jsonb,
    "starting_balance" bigint,
    "statement_descriptor" text,
    "status" text,
    "status_transitions" jsonb,
    "subscription" text,
    "subscription_details" jsonb,
    "subscription_proration_date" bigint,
    "subtotal" bigint,
    "subtotal_excluding_tax" bigint,
    "tax" bigint,
    "test_clock" text,
    "threshold_reason" jsonb,
    "total" bigint,
    "total_discount_amounts" jsonb,
    "total_excluding_tax" bigint,
    "total_tax_amounts" jsonb,
    "transfer_data" jsonb,
    "webhooks_delivered_at" timestamptz,
    "_raw" jsonb NOT NULL DEFAULT stripe._set_by_stripe('upcoming_invoices', NULL::jsonb),
    "_synced_at" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('upcoming_invoices', NULL::timestamptz),
    "_as_of" timestamptz NOT NULL DEFAULT stripe._set_by_stripe('upcoming_invoices', NULL::timestamptz),
    "_params" jsonb,
    PRIMARY KEY ("customer")
);
COMMENT ON TABLE "stripe"."upcoming_invoices" IS 'pgstripe: Stripe invoice objects (API 2023-10-16); managed by pgstripe, do not edit';
CREATE INDEX IF NOT EXISTS "upcoming_invoices_subscription_idx" ON "stripe"."upcoming_invoices" ("subscription");
CREATE INDEX IF NOT EXISTS "upcoming_invoices_charge_idx" ON "stripe"."upcoming_invoices" ("charge");
CREATE INDEX IF NOT EXISTS "upcoming_invoices_payment_intent_idx" ON "stripe"."upcoming_invoices" ("payment_intent");
CREATE INDEX IF NOT EXISTS "upcoming_invoices_created_idx" ON "stripe"."upcoming_invoices" ("created");
CREATE TRIGGER "_pgstripe_refuse_local_write" BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON "stripe"."upcoming_invoices" FOR EACH STATEMENT EXECUTE FUNCTION stripe._refuse_local_write();
