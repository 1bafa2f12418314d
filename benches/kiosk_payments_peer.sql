CREATE TABLE devices (device_id text PRIMARY KEY, lane text NOT NULL, active boolean NOT NULL);
INSERT INTO devices SELECT 'sco-' || i, 'lane-' || i, true FROM generate_series(0, 199) i;
CREATE TABLE policy (key text PRIMARY KEY, value jsonb NOT NULL);
INSERT INTO policy VALUES ('offline_tx_cap_minor', '1000000'), ('offline_exposure_cap_minor', '1000000000000'),
  ('offline_max_hours', '24'), ('offline_tenders', '["card_token", "p2pe"]'), ('forward_deadline_hours', '48');
CREATE TABLE payments_processor (id int PRIMARY KEY CHECK (id = 1), reachable_at timestamptz NOT NULL);
INSERT INTO payments_processor VALUES (1, now());
CREATE TABLE payments (
  payment_id uuid PRIMARY KEY, device_id text NOT NULL, lane text NOT NULL, idempotency_key text NOT NULL,
  body_sha256 text NOT NULL, basket_id text NOT NULL, amount_minor bigint NOT NULL CHECK (amount_minor > 0),
  currency text NOT NULL, tender_kind text NOT NULL, card_fingerprint text, tender jsonb NOT NULL,
  status text NOT NULL, reason text, auth_code text, offline boolean NOT NULL DEFAULT false,
  sent boolean NOT NULL DEFAULT false, created_at timestamptz NOT NULL, decided_at timestamptz,
  forward_by timestamptz, forwarded_at timestamptz, forward_attempts int NOT NULL DEFAULT 0,
  last_forward_error text, answer jsonb, sale_id text, velocity_indexed boolean NOT NULL DEFAULT false,
  UNIQUE (idempotency_key, device_id));
CREATE INDEX payments_queue ON payments (created_at) WHERE status = 'approved_offline';
CREATE INDEX payments_deadline ON payments (forward_by) WHERE status = 'approved_offline';
-- As Standin's migration 0015: by card only under a velocity cap, else in time order.
CREATE INDEX payments_card ON payments (card_fingerprint, created_at) WHERE offline AND card_fingerprint IS NOT NULL AND velocity_indexed;
CREATE INDEX payments_card_later ON payments (created_at) WHERE offline AND card_fingerprint IS NOT NULL AND NOT velocity_indexed;
CREATE INDEX payments_open ON payments (created_at) WHERE status = 'pending';
CREATE INDEX payments_unresolved ON payments (created_at) WHERE status = 'declined_offline' AND sent AND forwarded_at IS NULL;
CREATE INDEX payments_expired ON payments (created_at) WHERE status = 'expired';
CREATE TABLE payments_exposure (id int PRIMARY KEY CHECK (id = 1), count bigint NOT NULL, total_minor bigint NOT NULL);
INSERT INTO payments_exposure VALUES (1, 0, 0);
CREATE TABLE journal (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id uuid NOT NULL UNIQUE,
  lane text NOT NULL CHECK (lane IN ('payments', 'returns', 'pickups', 'audit')), kind text NOT NULL,
  occurred_at timestamptz NOT NULL, store_id text NOT NULL, actor text, device text, body text NOT NULL,
  prev_hash text NOT NULL, hash text NOT NULL,
  outcome text CHECK (outcome IN ('accepted', 'duplicate', 'rejected', 'conflict')), reason text,
  delivered_at timestamptz, delivered_via text, attempts int NOT NULL DEFAULT 0);
CREATE INDEX journal_pending ON journal (lane, seq) WHERE outcome IS NULL;
CREATE INDEX journal_set_aside ON journal (seq) WHERE outcome IN ('rejected', 'conflict');
-- The chain's head: the row every append locks, so entries chain in commit order.
CREATE TABLE journal_head (id int PRIMARY KEY CHECK (id = 1), hash text NOT NULL);
INSERT INTO journal_head VALUES (1, repeat('0', 64));

-- One kiosk payment in stand-in, as Standin's writer makes it: the idempotency check (same
-- answer replayed, another body refused), the policy, exposure and card-velocity reads, the
-- decision, the payment row and the exposure counter, and the journal entry chained to the
-- previous entry's hash. Locking the chain's head first makes each payment one step after the
-- other, as Standin's single writer does: the exposure cap is read and raised race-free.
CREATE FUNCTION pay(p_device text, p_key text, p_basket text, p_amount bigint, p_tender jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_body jsonb := jsonb_build_object('idempotency_key', p_key, 'basket_id', p_basket,
    'amount_minor', p_amount, 'currency', 'USD', 'tender', p_tender);
  v_hash text := encode(sha256(convert_to(v_body::text, 'UTF8')), 'hex');
  v_prev text; v_old record; v_lane text; v_fp text; v_reach timestamptz;
  v_exposure bigint; v_count bigint; v_sum bigint; v_status text; v_reason text;
  v_forward timestamptz; v_id uuid := gen_random_uuid(); v_answer jsonb; v_entry text;
  v_now timestamptz := clock_timestamp(); v_tx_cap bigint; v_cap bigint; v_hours int;
  v_tenders jsonb; v_fwd_hours int; v_velocity boolean;
BEGIN
  SELECT hash INTO v_prev FROM journal_head WHERE id = 1 FOR UPDATE;
  SELECT payment_id, body_sha256, answer INTO v_old FROM payments WHERE device_id = p_device AND idempotency_key = p_key;
  IF FOUND THEN
    IF v_old.body_sha256 <> v_hash THEN
      RETURN jsonb_build_object('error', 'idempotency_key_reused');
    END IF;
    -- As Standin stores it (issue 19, payments::store): the answer without its payment_id.
    RETURN v_old.answer || jsonb_build_object('payment_id', v_old.payment_id);
  END IF;
  SELECT lane INTO v_lane FROM devices WHERE device_id = p_device AND active;
  IF NOT FOUND THEN RETURN jsonb_build_object('error', 'unknown_device'); END IF;
  SELECT max(CASE WHEN key = 'offline_tx_cap_minor' THEN (value #>> '{}')::bigint END),
         max(CASE WHEN key = 'offline_exposure_cap_minor' THEN (value #>> '{}')::bigint END),
         max(CASE WHEN key = 'offline_max_hours' THEN (value #>> '{}')::int END),
         max(CASE WHEN key = 'forward_deadline_hours' THEN (value #>> '{}')::int END),
         jsonb_agg(value) FILTER (WHERE key = 'offline_tenders') -> 0,
         bool_or(key IN ('card_velocity_count', 'card_velocity_amount_minor'))
    INTO v_tx_cap, v_cap, v_hours, v_fwd_hours, v_tenders, v_velocity FROM policy;
  SELECT reachable_at INTO v_reach FROM payments_processor WHERE id = 1;
  v_fp := encode(sha256(convert_to(concat_ws('|', p_tender->>'brand', p_tender->>'last4',
    p_tender->>'exp_month', p_tender->>'exp_year'), 'UTF8')), 'hex');
  SELECT e.total_minor + coalesce((SELECT sum(amount_minor) FROM payments
           WHERE status = 'expired' AND created_at >= v_reach), 0)
    INTO v_exposure FROM payments_exposure e WHERE id = 1;
  IF v_velocity THEN
    SELECT count(*), coalesce(sum(amount_minor), 0) INTO v_count, v_sum FROM payments
      WHERE card_fingerprint = v_fp AND offline AND created_at >= v_reach
        AND status IN ('approved_offline', 'captured', 'declined_after_forward', 'expired');
  END IF;
  IF v_tx_cap IS NULL OR v_cap IS NULL THEN v_reason := 'offline_policy_missing';
  ELSIF NOT v_tenders ? (p_tender->>'kind') THEN v_reason := 'tender_not_allowed_offline';
  ELSIF p_amount > v_tx_cap THEN v_reason := 'over_offline_transaction_cap';
  ELSIF v_exposure + p_amount > v_cap THEN v_reason := 'store_exposure_cap';
  ELSIF v_now - v_reach > make_interval(hours => v_hours) THEN v_reason := 'offline_too_long';
  END IF;
  IF v_reason IS NULL THEN
    v_status := 'approved_offline';
    v_forward := v_now + make_interval(hours => v_fwd_hours);
  ELSE
    v_status := 'declined_offline';
  END IF;
  v_answer := jsonb_build_object('payment_id', v_id, 'status', v_status);
  IF v_reason IS NOT NULL THEN v_answer := v_answer || jsonb_build_object('reason', v_reason); END IF;
  INSERT INTO payments (payment_id, device_id, lane, idempotency_key, body_sha256, basket_id,
      amount_minor, currency, tender_kind, card_fingerprint, tender, status, reason, offline, sent,
      created_at, decided_at, forward_by, answer, velocity_indexed)
    VALUES (v_id, p_device, v_lane, p_key, v_hash, p_basket, p_amount, 'USD', p_tender->>'kind',
      v_fp, p_tender - 'token', v_status, v_reason, true, false, v_now, v_now, v_forward, v_answer - 'payment_id',
      coalesce(v_velocity, false));
  IF v_status = 'approved_offline' THEN
    UPDATE payments_exposure SET count = count + 1, total_minor = total_minor + p_amount WHERE id = 1;
  END IF;
  v_entry := jsonb_build_object('id', gen_random_uuid(), 'lane', 'payments',
    'kind', 'payment.' || v_status, 'occurred_at', v_now, 'store_id', 'store-0001',
    'actor', p_device, 'device', p_device,
    'body', jsonb_build_object('payment_id', v_id, 'idempotency_key', p_key, 'basket_id', p_basket,
      'lane', v_lane, 'amount_minor', p_amount, 'currency', 'USD', 'tender', p_tender - 'token',
      'status', v_status, 'reason', v_reason, 'forward_by', v_forward, 'outcome_unknown', false,
      'exposure_minor', v_exposure + CASE WHEN v_reason IS NULL THEN p_amount ELSE 0 END))::text;
  INSERT INTO journal (id, lane, kind, occurred_at, store_id, actor, device, body, prev_hash, hash)
    SELECT (e->>'id')::uuid, 'payments', e->>'kind', v_now, 'store-0001', p_device, p_device,
           (e->'body')::text, v_prev, encode(sha256(convert_to(v_prev || v_entry, 'UTF8')), 'hex')
    FROM (SELECT v_entry::jsonb AS e) x;
  UPDATE journal_head SET hash = encode(sha256(convert_to(v_prev || v_entry, 'UTF8')), 'hex') WHERE id = 1;
  RETURN v_answer;
END $$;
