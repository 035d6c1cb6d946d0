--
-- PostgreSQL database dump
--

\restrict roF3n7eOSJqahI7S94chcrhJNVtyYHrCblwwtdZNEAU5pQhxFk2sAf4Oa86LooD

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: Odd Schema; Type: SCHEMA; Schema: -; Owner: postgres
--

CREATE SCHEMA "Odd Schema";


ALTER SCHEMA "Odd Schema" OWNER TO postgres;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: Weird Name; Type: TABLE; Schema: Odd Schema; Owner: postgres
--

CREATE TABLE "Odd Schema"."Weird Name" (
    id integer,
    b bytea
);


ALTER TABLE "Odd Schema"."Weird Name" OWNER TO postgres;

--
-- Name: dotline; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.dotline (
    v text
);


ALTER TABLE public.dotline OWNER TO postgres;

--
-- Name: empty_one; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.empty_one (
    x integer
);


ALTER TABLE public.empty_one OWNER TO postgres;

--
-- Name: parted; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.parted (
    k integer,
    v text
)
PARTITION BY RANGE (k);


ALTER TABLE public.parted OWNER TO postgres;

--
-- Name: parted_a; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.parted_a (
    k integer,
    v text
);


ALTER TABLE public.parted_a OWNER TO postgres;

--
-- Name: parted_b; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.parted_b (
    k integer,
    v text
);


ALTER TABLE public.parted_b OWNER TO postgres;

--
-- Name: select; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public."select" (
    x integer
);


ALTER TABLE public."select" OWNER TO postgres;

--
-- Name: t1; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.t1 (
    id integer NOT NULL,
    v text
);


ALTER TABLE public.t1 OWNER TO postgres;

--
-- Name: unl; Type: TABLE; Schema: public; Owner: postgres
--

CREATE UNLOGGED TABLE public.unl (
    x integer
);


ALTER TABLE public.unl OWNER TO postgres;

--
-- Name: parted_a; Type: TABLE ATTACH; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.parted ATTACH PARTITION public.parted_a FOR VALUES FROM (0) TO (100);


--
-- Name: parted_b; Type: TABLE ATTACH; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.parted ATTACH PARTITION public.parted_b FOR VALUES FROM (100) TO (200);


--
-- Name: 16425; Type: BLOB; Schema: -; Owner: postgres
--

SELECT pg_catalog.lo_create('16425');


ALTER LARGE OBJECT 16425 OWNER TO postgres;

--
-- Data for Name: Weird Name; Type: TABLE DATA; Schema: Odd Schema; Owner: postgres
--

COPY "Odd Schema"."Weird Name" (id, b) FROM stdin;
1	\\x00ff0a0d
2	\\x00ff0a0d00ff0a0d
3	\\x00ff0a0d00ff0a0d00ff0a0d
4	\\x00ff0a0d00ff0a0d00ff0a0d00ff0a0d
5	\\x00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d
6	\\x00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d
7	\\x00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d
8	\\x00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d
9	\\x00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d
10	\\x00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d
11	\\x00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d
12	\\x00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d
13	\\x00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d
14	\\x00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d
15	\\x00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d
16	\\x00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d
17	\\x00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d
18	\\x00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d
19	\\x00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d
20	\\x00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d00ff0a0d
\.


--
-- Data for Name: dotline; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.dotline (v) FROM stdin;
\\.
.
.
\.


--
-- Data for Name: empty_one; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.empty_one (x) FROM stdin;
\.


--
-- Data for Name: parted_a; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.parted_a (k, v) FROM stdin;
0	p
1	p
2	p
3	p
4	p
5	p
6	p
7	p
8	p
9	p
10	p
11	p
12	p
13	p
14	p
15	p
16	p
17	p
18	p
19	p
20	p
21	p
22	p
23	p
24	p
25	p
26	p
27	p
28	p
29	p
30	p
31	p
32	p
33	p
34	p
35	p
36	p
37	p
38	p
39	p
40	p
41	p
42	p
43	p
44	p
45	p
46	p
47	p
48	p
49	p
50	p
51	p
52	p
53	p
54	p
55	p
56	p
57	p
58	p
59	p
60	p
61	p
62	p
63	p
64	p
65	p
66	p
67	p
68	p
69	p
70	p
71	p
72	p
73	p
74	p
75	p
76	p
77	p
78	p
79	p
80	p
81	p
82	p
83	p
84	p
85	p
86	p
87	p
88	p
89	p
90	p
91	p
92	p
93	p
94	p
95	p
96	p
97	p
98	p
99	p
\.


--
-- Data for Name: parted_b; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.parted_b (k, v) FROM stdin;
100	p
101	p
102	p
103	p
104	p
105	p
106	p
107	p
108	p
109	p
110	p
111	p
112	p
113	p
114	p
115	p
116	p
117	p
118	p
119	p
120	p
121	p
122	p
123	p
124	p
125	p
126	p
127	p
128	p
129	p
130	p
131	p
132	p
133	p
134	p
135	p
136	p
137	p
138	p
139	p
140	p
141	p
142	p
143	p
144	p
145	p
146	p
147	p
148	p
149	p
150	p
151	p
152	p
153	p
154	p
155	p
156	p
157	p
158	p
159	p
160	p
161	p
162	p
163	p
164	p
165	p
166	p
167	p
168	p
169	p
170	p
171	p
172	p
173	p
174	p
175	p
176	p
177	p
178	p
179	p
180	p
181	p
182	p
183	p
184	p
185	p
186	p
187	p
188	p
189	p
190	p
191	p
192	p
193	p
194	p
195	p
196	p
197	p
198	p
199	p
\.


--
-- Data for Name: select; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public."select" (x) FROM stdin;
1
2
\.


--
-- Data for Name: t1; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.t1 (id, v) FROM stdin;
1	row 1\nwith newlineand tab\t.
2	row 2\nwith newlineand tab\t.
3	row 3\nwith newlineand tab\t.
4	row 4\nwith newlineand tab\t.
5	row 5\nwith newlineand tab\t.
6	row 6\nwith newlineand tab\t.
7	row 7\nwith newlineand tab\t.
8	row 8\nwith newlineand tab\t.
9	row 9\nwith newlineand tab\t.
10	row 10\nwith newlineand tab\t.
11	row 11\nwith newlineand tab\t.
12	row 12\nwith newlineand tab\t.
13	row 13\nwith newlineand tab\t.
14	row 14\nwith newlineand tab\t.
15	row 15\nwith newlineand tab\t.
16	row 16\nwith newlineand tab\t.
17	row 17\nwith newlineand tab\t.
18	row 18\nwith newlineand tab\t.
19	row 19\nwith newlineand tab\t.
20	row 20\nwith newlineand tab\t.
21	row 21\nwith newlineand tab\t.
22	row 22\nwith newlineand tab\t.
23	row 23\nwith newlineand tab\t.
24	row 24\nwith newlineand tab\t.
25	row 25\nwith newlineand tab\t.
26	row 26\nwith newlineand tab\t.
27	row 27\nwith newlineand tab\t.
28	row 28\nwith newlineand tab\t.
29	row 29\nwith newlineand tab\t.
30	row 30\nwith newlineand tab\t.
31	row 31\nwith newlineand tab\t.
32	row 32\nwith newlineand tab\t.
33	row 33\nwith newlineand tab\t.
34	row 34\nwith newlineand tab\t.
35	row 35\nwith newlineand tab\t.
36	row 36\nwith newlineand tab\t.
37	row 37\nwith newlineand tab\t.
38	row 38\nwith newlineand tab\t.
39	row 39\nwith newlineand tab\t.
40	row 40\nwith newlineand tab\t.
41	row 41\nwith newlineand tab\t.
42	row 42\nwith newlineand tab\t.
43	row 43\nwith newlineand tab\t.
44	row 44\nwith newlineand tab\t.
45	row 45\nwith newlineand tab\t.
46	row 46\nwith newlineand tab\t.
47	row 47\nwith newlineand tab\t.
48	row 48\nwith newlineand tab\t.
49	row 49\nwith newlineand tab\t.
50	row 50\nwith newlineand tab\t.
51	row 51\nwith newlineand tab\t.
52	row 52\nwith newlineand tab\t.
53	row 53\nwith newlineand tab\t.
54	row 54\nwith newlineand tab\t.
55	row 55\nwith newlineand tab\t.
56	row 56\nwith newlineand tab\t.
57	row 57\nwith newlineand tab\t.
58	row 58\nwith newlineand tab\t.
59	row 59\nwith newlineand tab\t.
60	row 60\nwith newlineand tab\t.
61	row 61\nwith newlineand tab\t.
62	row 62\nwith newlineand tab\t.
63	row 63\nwith newlineand tab\t.
64	row 64\nwith newlineand tab\t.
65	row 65\nwith newlineand tab\t.
66	row 66\nwith newlineand tab\t.
67	row 67\nwith newlineand tab\t.
68	row 68\nwith newlineand tab\t.
69	row 69\nwith newlineand tab\t.
70	row 70\nwith newlineand tab\t.
71	row 71\nwith newlineand tab\t.
72	row 72\nwith newlineand tab\t.
73	row 73\nwith newlineand tab\t.
74	row 74\nwith newlineand tab\t.
75	row 75\nwith newlineand tab\t.
76	row 76\nwith newlineand tab\t.
77	row 77\nwith newlineand tab\t.
78	row 78\nwith newlineand tab\t.
79	row 79\nwith newlineand tab\t.
80	row 80\nwith newlineand tab\t.
81	row 81\nwith newlineand tab\t.
82	row 82\nwith newlineand tab\t.
83	row 83\nwith newlineand tab\t.
84	row 84\nwith newlineand tab\t.
85	row 85\nwith newlineand tab\t.
86	row 86\nwith newlineand tab\t.
87	row 87\nwith newlineand tab\t.
88	row 88\nwith newlineand tab\t.
89	row 89\nwith newlineand tab\t.
90	row 90\nwith newlineand tab\t.
91	row 91\nwith newlineand tab\t.
92	row 92\nwith newlineand tab\t.
93	row 93\nwith newlineand tab\t.
94	row 94\nwith newlineand tab\t.
95	row 95\nwith newlineand tab\t.
96	row 96\nwith newlineand tab\t.
97	row 97\nwith newlineand tab\t.
98	row 98\nwith newlineand tab\t.
99	row 99\nwith newlineand tab\t.
100	row 100\nwith newlineand tab\t.
101	row 101\nwith newlineand tab\t.
102	row 102\nwith newlineand tab\t.
103	row 103\nwith newlineand tab\t.
104	row 104\nwith newlineand tab\t.
105	row 105\nwith newlineand tab\t.
106	row 106\nwith newlineand tab\t.
107	row 107\nwith newlineand tab\t.
108	row 108\nwith newlineand tab\t.
109	row 109\nwith newlineand tab\t.
110	row 110\nwith newlineand tab\t.
111	row 111\nwith newlineand tab\t.
112	row 112\nwith newlineand tab\t.
113	row 113\nwith newlineand tab\t.
114	row 114\nwith newlineand tab\t.
115	row 115\nwith newlineand tab\t.
116	row 116\nwith newlineand tab\t.
117	row 117\nwith newlineand tab\t.
118	row 118\nwith newlineand tab\t.
119	row 119\nwith newlineand tab\t.
120	row 120\nwith newlineand tab\t.
121	row 121\nwith newlineand tab\t.
122	row 122\nwith newlineand tab\t.
123	row 123\nwith newlineand tab\t.
124	row 124\nwith newlineand tab\t.
125	row 125\nwith newlineand tab\t.
126	row 126\nwith newlineand tab\t.
127	row 127\nwith newlineand tab\t.
128	row 128\nwith newlineand tab\t.
129	row 129\nwith newlineand tab\t.
130	row 130\nwith newlineand tab\t.
131	row 131\nwith newlineand tab\t.
132	row 132\nwith newlineand tab\t.
133	row 133\nwith newlineand tab\t.
134	row 134\nwith newlineand tab\t.
135	row 135\nwith newlineand tab\t.
136	row 136\nwith newlineand tab\t.
137	row 137\nwith newlineand tab\t.
138	row 138\nwith newlineand tab\t.
139	row 139\nwith newlineand tab\t.
140	row 140\nwith newlineand tab\t.
141	row 141\nwith newlineand tab\t.
142	row 142\nwith newlineand tab\t.
143	row 143\nwith newlineand tab\t.
144	row 144\nwith newlineand tab\t.
145	row 145\nwith newlineand tab\t.
146	row 146\nwith newlineand tab\t.
147	row 147\nwith newlineand tab\t.
148	row 148\nwith newlineand tab\t.
149	row 149\nwith newlineand tab\t.
150	row 150\nwith newlineand tab\t.
151	row 151\nwith newlineand tab\t.
152	row 152\nwith newlineand tab\t.
153	row 153\nwith newlineand tab\t.
154	row 154\nwith newlineand tab\t.
155	row 155\nwith newlineand tab\t.
156	row 156\nwith newlineand tab\t.
157	row 157\nwith newlineand tab\t.
158	row 158\nwith newlineand tab\t.
159	row 159\nwith newlineand tab\t.
160	row 160\nwith newlineand tab\t.
161	row 161\nwith newlineand tab\t.
162	row 162\nwith newlineand tab\t.
163	row 163\nwith newlineand tab\t.
164	row 164\nwith newlineand tab\t.
165	row 165\nwith newlineand tab\t.
166	row 166\nwith newlineand tab\t.
167	row 167\nwith newlineand tab\t.
168	row 168\nwith newlineand tab\t.
169	row 169\nwith newlineand tab\t.
170	row 170\nwith newlineand tab\t.
171	row 171\nwith newlineand tab\t.
172	row 172\nwith newlineand tab\t.
173	row 173\nwith newlineand tab\t.
174	row 174\nwith newlineand tab\t.
175	row 175\nwith newlineand tab\t.
176	row 176\nwith newlineand tab\t.
177	row 177\nwith newlineand tab\t.
178	row 178\nwith newlineand tab\t.
179	row 179\nwith newlineand tab\t.
180	row 180\nwith newlineand tab\t.
181	row 181\nwith newlineand tab\t.
182	row 182\nwith newlineand tab\t.
183	row 183\nwith newlineand tab\t.
184	row 184\nwith newlineand tab\t.
185	row 185\nwith newlineand tab\t.
186	row 186\nwith newlineand tab\t.
187	row 187\nwith newlineand tab\t.
188	row 188\nwith newlineand tab\t.
189	row 189\nwith newlineand tab\t.
190	row 190\nwith newlineand tab\t.
191	row 191\nwith newlineand tab\t.
192	row 192\nwith newlineand tab\t.
193	row 193\nwith newlineand tab\t.
194	row 194\nwith newlineand tab\t.
195	row 195\nwith newlineand tab\t.
196	row 196\nwith newlineand tab\t.
197	row 197\nwith newlineand tab\t.
198	row 198\nwith newlineand tab\t.
199	row 199\nwith newlineand tab\t.
200	row 200\nwith newlineand tab\t.
201	row 201\nwith newlineand tab\t.
202	row 202\nwith newlineand tab\t.
203	row 203\nwith newlineand tab\t.
204	row 204\nwith newlineand tab\t.
205	row 205\nwith newlineand tab\t.
206	row 206\nwith newlineand tab\t.
207	row 207\nwith newlineand tab\t.
208	row 208\nwith newlineand tab\t.
209	row 209\nwith newlineand tab\t.
210	row 210\nwith newlineand tab\t.
211	row 211\nwith newlineand tab\t.
212	row 212\nwith newlineand tab\t.
213	row 213\nwith newlineand tab\t.
214	row 214\nwith newlineand tab\t.
215	row 215\nwith newlineand tab\t.
216	row 216\nwith newlineand tab\t.
217	row 217\nwith newlineand tab\t.
218	row 218\nwith newlineand tab\t.
219	row 219\nwith newlineand tab\t.
220	row 220\nwith newlineand tab\t.
221	row 221\nwith newlineand tab\t.
222	row 222\nwith newlineand tab\t.
223	row 223\nwith newlineand tab\t.
224	row 224\nwith newlineand tab\t.
225	row 225\nwith newlineand tab\t.
226	row 226\nwith newlineand tab\t.
227	row 227\nwith newlineand tab\t.
228	row 228\nwith newlineand tab\t.
229	row 229\nwith newlineand tab\t.
230	row 230\nwith newlineand tab\t.
231	row 231\nwith newlineand tab\t.
232	row 232\nwith newlineand tab\t.
233	row 233\nwith newlineand tab\t.
234	row 234\nwith newlineand tab\t.
235	row 235\nwith newlineand tab\t.
236	row 236\nwith newlineand tab\t.
237	row 237\nwith newlineand tab\t.
238	row 238\nwith newlineand tab\t.
239	row 239\nwith newlineand tab\t.
240	row 240\nwith newlineand tab\t.
241	row 241\nwith newlineand tab\t.
242	row 242\nwith newlineand tab\t.
243	row 243\nwith newlineand tab\t.
244	row 244\nwith newlineand tab\t.
245	row 245\nwith newlineand tab\t.
246	row 246\nwith newlineand tab\t.
247	row 247\nwith newlineand tab\t.
248	row 248\nwith newlineand tab\t.
249	row 249\nwith newlineand tab\t.
250	row 250\nwith newlineand tab\t.
251	row 251\nwith newlineand tab\t.
252	row 252\nwith newlineand tab\t.
253	row 253\nwith newlineand tab\t.
254	row 254\nwith newlineand tab\t.
255	row 255\nwith newlineand tab\t.
256	row 256\nwith newlineand tab\t.
257	row 257\nwith newlineand tab\t.
258	row 258\nwith newlineand tab\t.
259	row 259\nwith newlineand tab\t.
260	row 260\nwith newlineand tab\t.
261	row 261\nwith newlineand tab\t.
262	row 262\nwith newlineand tab\t.
263	row 263\nwith newlineand tab\t.
264	row 264\nwith newlineand tab\t.
265	row 265\nwith newlineand tab\t.
266	row 266\nwith newlineand tab\t.
267	row 267\nwith newlineand tab\t.
268	row 268\nwith newlineand tab\t.
269	row 269\nwith newlineand tab\t.
270	row 270\nwith newlineand tab\t.
271	row 271\nwith newlineand tab\t.
272	row 272\nwith newlineand tab\t.
273	row 273\nwith newlineand tab\t.
274	row 274\nwith newlineand tab\t.
275	row 275\nwith newlineand tab\t.
276	row 276\nwith newlineand tab\t.
277	row 277\nwith newlineand tab\t.
278	row 278\nwith newlineand tab\t.
279	row 279\nwith newlineand tab\t.
280	row 280\nwith newlineand tab\t.
281	row 281\nwith newlineand tab\t.
282	row 282\nwith newlineand tab\t.
283	row 283\nwith newlineand tab\t.
284	row 284\nwith newlineand tab\t.
285	row 285\nwith newlineand tab\t.
286	row 286\nwith newlineand tab\t.
287	row 287\nwith newlineand tab\t.
288	row 288\nwith newlineand tab\t.
289	row 289\nwith newlineand tab\t.
290	row 290\nwith newlineand tab\t.
291	row 291\nwith newlineand tab\t.
292	row 292\nwith newlineand tab\t.
293	row 293\nwith newlineand tab\t.
294	row 294\nwith newlineand tab\t.
295	row 295\nwith newlineand tab\t.
296	row 296\nwith newlineand tab\t.
297	row 297\nwith newlineand tab\t.
298	row 298\nwith newlineand tab\t.
299	row 299\nwith newlineand tab\t.
300	row 300\nwith newlineand tab\t.
\.


--
-- Data for Name: unl; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.unl (x) FROM stdin;
5
\.


--
-- Data for Name: BLOBS; Type: BLOBS; Schema: -; Owner: -
--

BEGIN;

SELECT pg_catalog.lo_open('16425', 131072);
SELECT pg_catalog.lowrite(0, '\x61206c61726765206f626a656374');
SELECT pg_catalog.lo_close(0);

COMMIT;

--
-- Name: t1 t1_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.t1
    ADD CONSTRAINT t1_pkey PRIMARY KEY (id);


--
-- PostgreSQL database dump complete
--

\unrestrict roF3n7eOSJqahI7S94chcrhJNVtyYHrCblwwtdZNEAU5pQhxFk2sAf4Oa86LooD

